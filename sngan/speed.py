"""How a run is made fast without changing its mathematics: precision, TF32, torch.compile,
channels_last and where the training images live.

Each setting is asked for by name, or left to ``auto``; ``resolve`` turns the request into what this
device and launch can do and returns one note per request it could not honour (a CPU, a GPU older
than Ampere, a torchrun launch). ``auto`` picks the fastest settings measured to keep the
mathematics: on one CUDA GPU bf16 autocast, TF32, compile=max (CUDA graphs) and channels_last; under
torchrun compile=default (CUDA graphs do not capture DDP's gradient all-reduce here); on the CPU fp32
eager (compiling costs more than a short CPU run saves).

Whatever the precision, spectral normalization's power iteration and sigma run in fp32
(``sngan.models.layers.FP32SpectralNorm``) and the losses are computed in fp32 from the networks'
outputs; the optimizers keep fp32 weights.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

PRECISIONS = ("auto", "fp32", "bf16")
COMPILE_MODES = ("auto", "none", "default", "max")
DATA_PLACES = ("auto", "device", "host")
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


def resolve(
    device: torch.device,
    precision: str = "auto",
    tf32: bool | None = None,
    compile: str = "auto",
    channels_last: bool | None = None,
    data_on: str = "auto",
    data_bytes: int = 0,
    distributed: bool = False,
) -> tuple[Speed, list[str]]:
    """What this device and launch can run of the request, and a note for each fallback."""
    cuda, notes = device.type == "cuda", []
    if precision == "auto":
        precision = "bf16" if _ampere(device) else "fp32"
    elif precision == "bf16" and not (device.type == "cpu" or _ampere(device)):
        notes.append(f"train.precision=bf16 needs an Ampere or newer GPU (or the CPU); {device} trains in fp32.")
        precision = "fp32"
    if tf32 is None:
        tf32 = _ampere(device)
    elif tf32 and not _ampere(device):
        notes.append(f"train.tf32=true needs an Ampere or newer NVIDIA GPU; {device} keeps full fp32 matmuls.")
        tf32 = False
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
    if compile != "none" and not c_compiler():
        notes.append(
            f"train.compile={compile} needs a C compiler (torch.compile builds kernels with one) and none was "
            f"found (set CC or install gcc); this run trains eagerly (train.compile=none)."
        )
        compile = "none"
    if channels_last is None:
        channels_last = cuda
    on_device = data_on == "device" or (data_on == "auto" and cuda and fits(data_bytes, device))
    if data_on == "device" and cuda and not fits(data_bytes, device, 0.9):
        notes.append(
            f"train.data_on=device: the images take {data_bytes / 2**30:.1f} GiB, more than {device} has free; "
            f"they stay in host memory (train.data_on=host)."
        )
        on_device = False
    return Speed(precision, tf32, compile, channels_last, on_device and device.type != "cpu"), notes


def c_compiler() -> bool:
    return bool(os.environ.get("CC")) or any(shutil.which(cc) for cc in ("gcc", "cc", "clang"))


def fits(nbytes: int, device: torch.device, fraction: float = DEVICE_DATA_FRACTION) -> bool:
    if device.type != "cuda":
        return True
    free, _ = torch.cuda.mem_get_info(device)
    return nbytes <= fraction * free


def set_tf32(enabled: bool) -> None:
    """TF32 for CUDA matmuls and convolutions (FID and IS turn it off for themselves)."""
    matmul, conv = torch.backends.cuda.matmul, torch.backends.cudnn.conv
    if hasattr(matmul, "fp32_precision") and hasattr(conv, "fp32_precision"):  # torch >= 2.9
        matmul.fp32_precision = conv.fp32_precision = "tf32" if enabled else "ieee"
    else:  # pragma: no cover - older torch
        matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = enabled


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


def memory_format(speed: Speed) -> torch.memory_format:
    return torch.channels_last if speed.channels_last else torch.contiguous_format
