"""Running out of memory where the settings decide how much is needed: placing the training images on the
device, the first training step, and an evaluation. There a failed allocation is a setting to lower, not
a bug, so it becomes a one-paragraph error naming those settings and the memory asked for and free; an
evaluation scheduled in a long run is skipped with a warning instead (``EvaluationOutOfMemory``). Later
training steps that run out (a leak, a fragmented GPU) stay tracebacks."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import torch

# How a refused allocation reads: torch.OutOfMemoryError on CUDA; on the CPU a plain RuntimeError from
# the allocator ("DefaultCPUAllocator: not enough memory" or "can't allocate memory", by torch version)
_WORDS = ("not enough memory", "can't allocate memory", "cannot allocate memory", "out of memory")


class OutOfMemory(RuntimeError):
    """Memory ran out at start-up or in the first step; the message says what to lower."""


class EvaluationOutOfMemory(RuntimeError):
    """An evaluation ran out of memory (on any rank under torchrun: every rank raises it together); the
    training loop skips that evaluation and trains on."""


def is_out_of_memory(exc: BaseException) -> bool:
    if isinstance(exc, (torch.OutOfMemoryError, MemoryError, EvaluationOutOfMemory)):
        return True
    return isinstance(exc, RuntimeError) and any(word in str(exc).lower() for word in _WORDS)


def memory_free(device: torch.device | None) -> str:
    """What ``device`` has free now: the GPU's free and total memory, or the host's available memory."""
    if device is not None and device.type == "cuda" and torch.cuda.is_available():
        free, total = torch.cuda.mem_get_info(device)
        return f"{free / 2**30:.2f} GiB of the {total / 2**30:.2f} GiB of {device} free now"
    try:  # the host: MemAvailable counts what the kernel can reclaim (caches), unlike the free pages
        info = dict(line.split(":", 1) for line in Path("/proc/meminfo").read_text().splitlines() if ":" in line)
        free, total = (int(info[key].split()[0]) * 1024 for key in ("MemAvailable", "MemTotal"))
    except (OSError, KeyError, ValueError):  # not Linux
        return "the free host memory is unknown here"
    return f"{free / 2**30:.2f} GiB of the {total / 2**30:.2f} GiB of host memory available now"


def first_line(exc: BaseException) -> str:
    """An error's first line, its spaces collapsed, at most 300 characters; its type where it says nothing."""
    text = str(exc).strip()
    return " ".join(text.splitlines()[0].split())[:300] if text else type(exc).__name__


def describe(exc: BaseException, device: torch.device | None) -> str:
    """The allocator's first line (it says how much was asked for; the rest, CUDA's tips, is not ours)
    and what is free now."""
    return f"{first_line(exc)}; {memory_free(device)}"


def what_to_lower(batch_size_d: int, batch_size_g: int, width: float) -> str:
    """The settings that decide a run's memory, with their values."""
    return (
        f"Lower the batches (train.batch_size_d={batch_size_d}, train.batch_size_g={batch_size_g}), keep the "
        f"training images in host memory (train.data_on=host), or narrow the networks (model.width={width:g}, "
        f"e.g. {width / 2:g})"
    )


@contextlib.contextmanager
def out_of_memory(doing: str, fix: str, device: torch.device | None = None, lost: str | None = None) -> Iterator[None]:
    """Turn an out-of-memory error raised inside into ``OutOfMemory``, saying what ran out while ``doing``
    what (the memory asked for and what ``device`` has free), what was kept (``lost``; by default: no
    training step had been completed) and ``fix``; any other error passes unchanged."""
    try:
        yield
    except (RuntimeError, MemoryError) as exc:
        if not is_out_of_memory(exc):
            raise
        kept = lost or (
            "Nothing was lost: no training step had been completed and the checkpoints already in the run "
            "folder are untouched."
        )
        said = str(exc) if isinstance(exc, EvaluationOutOfMemory) else describe(exc, device)  # said already
        raise OutOfMemory(
            f"Out of memory while {doing} ({said}). {kept} {fix}, and run the same command again."
        ) from None


@contextlib.contextmanager
def noted(failures: list[str], device: torch.device | None) -> Iterator[None]:
    """Run the block; if it runs out of memory, leave it and append what ran out to ``failures`` instead
    of raising (under torchrun the ranks then agree on it, see ``Scorer``); other errors pass."""
    try:
        yield
    except (RuntimeError, MemoryError) as exc:
        if not is_out_of_memory(exc):
            raise
        failures.append(describe(exc, device))
        if device is not None and device.type == "cuda":
            torch.cuda.empty_cache()  # give the next evaluation (and training) the blocks back
