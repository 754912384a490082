"""How a run is made fast without changing its mathematics: precision, TF32, torch.compile,
channels_last and where the training images live.

Each setting is asked for by name, or left to ``auto``; ``resolve`` turns the request into what this
device and launch can do and returns one note per request it could not honour (a CPU, a GPU older
than Ampere, a torchrun launch). ``auto`` picks the settings that should be fastest while keeping
the mathematics (by the figures of the probe quoted in docs/speed.md; not yet measured on a GPU here):
on one CUDA GPU fp32 with TF32, compile=max (CUDA graphs) and channels_last (bf16 autocast is
opt-in: on the synthetic quality check it covered fewer modes than fp32); under torchrun
compile=default (CUDA graphs are not combined with DDP's gradient all-reduce here); on the CPU fp32
eager (compiling costs more than a short CPU run saves) with channels_last (oneDNN's convolutions
run faster on it: the quick start's updates 15% and the conditional quick start's 8% on 2 AVX2 cores).

Whatever the precision, spectral normalization's power iteration and sigma run in fp32
(``sngan.models.layers.FP32SpectralNorm``) and the losses are computed in fp32 from the networks'
outputs; the optimizers keep fp32 weights.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import os
import shutil
import sys
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

KEEP_FREED_BYTES = 256 << 20  # keep_freed_memory: blocks up to this size come from the heap, which keeps this much free
DEVICE_DATA_FRACTION = 0.5  # data_on=auto: on the GPU when the images take at most this share of its free memory


@dataclass(frozen=True)
class Speed:
    """The resolved settings of a run (recorded in provenance.json)."""

    precision: str = "fp32"  # fp32 | bf16 (autocast for the networks)
    tf32: bool = False
    compile: str = "none"  # none | default | max
    channels_last: bool = False
    data_on_device: bool = False  # the uint8 images held on the training device

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _ampere(device: torch.device) -> bool:
    return device.type == "cuda" and torch.cuda.get_device_capability(device) >= (8, 0)


def resolve_compile(device: torch.device, compile: str, distributed: bool, sync_bn: bool, notes: list[str]) -> str:
    """The compile mode this device and launch can run of ``compile``; each fallback adds a note."""
    cuda = device.type == "cuda"
    if compile == "auto":
        compile = ("default" if distributed else "max") if cuda else "none"
    elif compile == "max" and not cuda:
        notes.append(f"train.compile=max captures CUDA graphs, which need a CUDA GPU; {device} uses compile=default.")
        compile = "default"
    elif compile == "max" and distributed:
        notes.append("train.compile=max (CUDA graphs) is not used under torchrun; this launch uses compile=default.")
        compile = "default"
    if compile != "none" and device.type not in ("cuda", "cpu"):
        notes.append(f"train.compile={compile} is not supported on {device.type}; this run trains eagerly.")
        compile = "none"
    if compile != "none" and distributed and sync_bn:
        notes.append(f"train.compile={compile} is not combined with train.sync_bn=true (torch.compile, DDP and "
                     f"SyncBatchNorm have open failures together); this launch trains eagerly.")  # fmt: skip
        compile = "none"
    if compile != "none" and not compiler_for(device):
        kind, fix = ("C++", "set CXX or install g++") if device.type == "cpu" else ("C", "set CC or install gcc")
        notes.append(
            f"train.compile={compile} needs a {kind} compiler (torch.compile builds kernels with one) and none "
            f"was found ({fix}); this run trains eagerly (train.compile=none)."
        )
        compile = "none"
    return compile


def resolve(
    device: torch.device,
    precision: str = "auto",
    tf32: bool | None = None,
    compile: str = "auto",
    channels_last: bool | None = None,
    data_on: str = "auto",
    data_bytes: int = 0,
    distributed: bool = False,
    sync_bn: bool = False,
) -> tuple[Speed, list[str]]:
    """What this device and launch can run of the request, and a note for each fallback."""
    cuda, notes = device.type == "cuda", []
    if precision == "auto":  # bf16 is opt-in: on the synthetic check it covered fewer modes (docs/speed.md)
        precision = "fp32"
    elif precision == "bf16" and not (device.type == "cpu" or _ampere(device)):
        notes.append(f"train.precision=bf16 needs an Ampere or newer GPU (or the CPU); {device} trains in fp32.")
        precision = "fp32"
    if tf32 is None:
        tf32 = _ampere(device)
    elif tf32 and not _ampere(device):
        notes.append(f"train.tf32=true needs an Ampere or newer NVIDIA GPU; {device} keeps full fp32 matmuls.")
        tf32 = False
    compile = resolve_compile(device, compile, distributed, sync_bn, notes)
    if channels_last is None:
        channels_last = device.type in ("cuda", "cpu")
    on_device = data_on == "device" or (data_on == "auto" and cuda and fits(data_bytes, device))
    if data_on == "device" and cuda and not fits(data_bytes, device, 0.9):
        notes.append(
            f"train.data_on=device: the images take {data_bytes / 2**30:.1f} GiB, more than {device} has free; "
            f"they stay in host memory (train.data_on=host)."
        )
        on_device = False
    return Speed(precision, tf32, compile, channels_last, on_device and device.type != "cpu"), notes


def compiler_for(device: torch.device) -> bool:
    """Whether torch.compile finds what it builds kernels with: a C++ compiler for the CPU (inductor's
    C++ code), a C compiler for CUDA (Triton's launcher)."""
    env, names = ("CXX", ("g++", "c++", "clang++")) if device.type == "cpu" else ("CC", ("gcc", "cc", "clang"))
    return bool(os.environ.get(env)) or any(shutil.which(name) for name in names)


def fits(nbytes: int, device: torch.device, fraction: float = DEVICE_DATA_FRACTION) -> bool:
    if device.type != "cuda":
        return True
    free, _ = torch.cuda.mem_get_info(device)
    return nbytes <= fraction * free


def set_tf32(enabled: bool) -> None:
    """TF32 for CUDA matmuls and convolutions (FID and IS turn it off for themselves). The long-standing
    setters: inductor and other code still read the matching getters, which the newer fp32_precision
    API makes raise when only it was set."""
    torch.set_float32_matmul_precision("high" if enabled else "highest")
    torch.backends.cudnn.allow_tf32 = enabled


def set_backends(speed: Speed, device: torch.device) -> None:
    """TF32 as resolved, and on a CUDA device cuDNN's algorithm timing: a run's batch shapes are fixed, so
    timing each convolution's algorithms once (at the first steps) and keeping the fastest pays off.
    FID and IS turn both off for themselves (``sngan.metrics.features.full_fp32``)."""
    set_tf32(speed.tf32)
    torch.backends.cudnn.benchmark = device.type == "cuda"


def autocast(speed: Speed, device: torch.device) -> contextlib.AbstractContextManager[Any]:
    """The networks' precision: bf16 autocast, or nothing."""
    if speed.precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def compiled(net: nn.Module, mode: str) -> nn.Module:
    """``net`` through torch.compile (shapes fixed: D and G see two batch sizes each, both static);
    ``max``: reduce-overhead, i.e. the forward and backward replayed as CUDA graphs."""
    if mode == "none":
        return net
    return torch.compile(net, mode="reduce-overhead" if mode == "max" else None, dynamic=False)  # type: ignore[return-value]


def mark_step(speed: Speed) -> None:
    """Under compile=max, tell CUDA-graph trees an update begins: the previous update's graph outputs
    (already consumed) may then be overwritten instead of kept."""
    if speed.compile == "max":
        torch.compiler.cudagraph_mark_step_begin()


def cudagraph_skips() -> int:
    """How many graphs torch.compile has run without CUDA graphs in this process so far: its
    reduce-overhead mode falls back to plain compiled code silently (e.g. for an input it cannot keep
    static); inductor counts each fallback."""
    from torch._dynamo.utils import counters  # loaded by torch.compile anyway

    return int(counters["inductor"]["cudagraph_skips"])


class GraphCheck:
    """Under compile=max, says after a training step if torch.compile ran any more update graphs
    without CUDA graphs (most fall back when compiled, in the first step; some only when replayed, or
    after many re-recordings), instead of leaving a run slower than asked without a word."""

    def __init__(self, speed: Speed) -> None:
        self.active = speed.compile == "max"
        self.seen = cudagraph_skips() if self.active else 0

    def after_step(self) -> None:
        if not self.active:
            return
        now = cudagraph_skips()  # a dict lookup: cheap
        skipped, self.seen = now - self.seen, now
        if skipped > 0:
            print(f"note: train.compile=max: torch.compile ran {skipped} more update graph(s) without CUDA "
                  f"graphs, so those updates are compiled but not captured (slower, same results). Run with "
                  f"TORCH_LOGS=cudagraphs to see why, or set train.compile=default to say so.",
                  file=sys.stderr)  # fmt: skip


def memory_format(speed: Speed) -> torch.memory_format:
    return torch.channels_last if speed.channels_last else torch.contiguous_format


@functools.cache  # process-wide settings: applied (and an odd SNGAN_MALLOC warned about) once
def keep_freed_memory() -> bool:
    """Have glibc's malloc keep freed memory for reuse instead of handing it back to the OS at once.

    By default it maps every large block (a batch of activations) afresh and unmaps it when freed, so
    each training step and each Inception batch pays page faults for all its large tensors again.
    Serving blocks up to ``KEEP_FREED_BYTES`` from the heap and trimming it only past that much free is
    what jemalloc and tcmalloc do. Measured on 2 AVX2 cores: Inception features (batch 200, the
    default) 0.26 -> 0.19 s an image with peak resident memory 3.7 -> 3.9 GB (a 1 GiB limit gave 0.18 s
    but 6.6 GB), quick-start updates 10% faster. train, evaluate, sample and fid_stats call this first;
    ``SNGAN_MALLOC=default`` keeps glibc's own settings (``kept`` or unset:
    these), any other value is warned about and keeps glibc's. Returns whether the settings were applied
    (Linux with glibc only; elsewhere, or with another allocator preloaded, nothing changes)."""
    setting = os.environ.get("SNGAN_MALLOC", "kept")
    if setting not in ("kept", "default"):
        print(f"warning: SNGAN_MALLOC={setting!r} is not one of 'kept', 'default'; keeping glibc's malloc "
              f"settings. Unset it or set SNGAN_MALLOC=kept to reuse freed memory.", file=sys.stderr)  # fmt: skip
    if setting != "kept" or not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:  # musl and other C libraries
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3  # glibc's malloc.h
    return bool(libc.mallopt(m_mmap_threshold, KEEP_FREED_BYTES) and libc.mallopt(m_trim_threshold, KEEP_FREED_BYTES))
