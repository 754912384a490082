"""Running out of memory where the settings decide how much is needed: placing the training images on the
device and the first training step. There a failed allocation is a setting to lower, not a bug, so it
becomes a one-paragraph error naming those settings; later ones (a leak, a fragmented GPU) stay
tracebacks."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

# How a refused allocation reads: torch.OutOfMemoryError on CUDA; on the CPU a plain RuntimeError from
# the allocator ("DefaultCPUAllocator: not enough memory" or "can't allocate memory", by torch version)
_WORDS = ("not enough memory", "can't allocate memory", "cannot allocate memory", "out of memory")


class OutOfMemory(RuntimeError):
    """Memory ran out at start-up or in the first step; the message says what to lower."""


def is_out_of_memory(exc: BaseException) -> bool:
    if isinstance(exc, (torch.OutOfMemoryError, MemoryError)):
        return True
    return isinstance(exc, RuntimeError) and any(word in str(exc).lower() for word in _WORDS)


def what_to_lower(batch_size_d: int, batch_size_g: int, width: float) -> str:
    """The settings that decide a run's memory, with their values."""
    return (
        f"Lower the batches (train.batch_size_d={batch_size_d}, train.batch_size_g={batch_size_g}), keep the "
        f"training images in host memory (train.data_on=host), or narrow the networks (model.width={width:g}, "
        f"e.g. {width / 2:g})"
    )


@contextlib.contextmanager
def out_of_memory(doing: str, fix: str) -> Iterator[None]:
    """Turn an out-of-memory error raised inside into ``OutOfMemory``, saying what ran out while ``doing``
    what, that nothing was lost, and ``fix``; any other error passes unchanged."""
    try:
        yield
    except (RuntimeError, MemoryError) as exc:
        if not is_out_of_memory(exc):
            raise
        # the allocator's first line says how much was asked for; the rest (CUDA's allocator tips) is not ours
        said = " ".join(str(exc).strip().splitlines()[0].split()) if str(exc).strip() else type(exc).__name__
        raise OutOfMemory(
            f"Out of memory while {doing} ({said[:300]}). Nothing was lost: no training step had been completed "
            f"and the checkpoints already in the run folder are untouched. {fix}, and run the same command again."
        ) from None
