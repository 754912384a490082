"""Features of image sets and generators, and the scores computed from them.

Callers pass images (uint8 tensors) or a ``sample_fn(n) -> Tensor`` in [-1, 1];
nothing here knows about models, datasets or configs. Generated images are
rounded to uint8 first, exactly as if they had been saved as PNGs and read
back, so in-memory and file-based evaluations agree.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Protocol, runtime_checkable

import numpy as np
import torch

from sngan.utils.distributed import shard

from .inception import LOGITS
from .resize import to_input


@contextlib.contextmanager
def full_fp32() -> Iterator[None]:
    """TF32 off (it shifts FID), autocast off and cuDNN's algorithm timing off (training turns it on: the
    fastest algorithm it times may differ from process to process, and with it the last digits of FID),
    restored afterwards. Through the same long-standing setters as ``sngan.training.speed.set_tf32``:
    torch >= 2.9 raises at the next cuBLAS or cuDNN call when the legacy and the newer ``fp32_precision``
    settings have been mixed."""
    saved = (torch.get_float32_matmul_precision(), torch.backends.cudnn.allow_tf32, torch.backends.cudnn.benchmark)
    torch.set_float32_matmul_precision("highest")
    torch.backends.cudnn.allow_tf32 = torch.backends.cudnn.benchmark = False
    try:
        with torch.autocast("cuda", enabled=False), torch.autocast("cpu", enabled=False):
            yield
    finally:
        torch.set_float32_matmul_precision(saved[0])
        torch.backends.cudnn.allow_tf32, torch.backends.cudnn.benchmark = saved[1:]


def uint8_batches(images: torch.Tensor, batch: int) -> Iterator[torch.Tensor]:
    for i in range(0, len(images), batch):
        yield images[i : i + batch]


class FeatureNetwork(Protocol):
    """A network whose features the measures compare (sngan/metrics/inception.py, dinov2.py): images in [0, 1]
    (at ``input_size`` under the clean ``resize``; any size under legacy, which it resizes itself) ->
    (features [N, dims], logits or None)."""

    name: str  # inception | dinov2: in the name of every number of a rule on another network than Inception
    dims: int
    with_logits: bool
    resize: str  # legacy | clean (sngan/metrics/resize.py)

    @property
    def input_size(self) -> int: ...

    def place(self, device: torch.device) -> FeatureNetwork: ...

    def __call__(self, images: torch.Tensor, logits: bool = True) -> tuple[torch.Tensor, torch.Tensor | None]: ...


@runtime_checkable
class Sampler(Protocol):
    """What images are drawn from: ``sampler(n)``, the next n images in [-1, 1]; ``skip(n)``, drawing the next
    n's noise without generating them, so that a rank generating a later share of a sample set begins where
    the ranks before it end (``sngan.inference.SeededSampler`` is one)."""

    def __call__(self, n: int) -> torch.Tensor: ...

    def skip(self, n: int) -> None: ...


def generated_batches(
    sample_fn: Callable[[int], torch.Tensor], n: int, batch: int, rank: int = 0, world: int = 1
) -> Iterator[torch.Tensor]:
    """``n`` generated images as uint8 batches (rounded as a PNG would be). With ``world`` > 1, only the
    ``rank``-th contiguous share of the batches; ``sample_fn`` is then a ``Sampler``, whose ``skip`` draws the
    noise of the batches before the share, so the shares together are the one-process set."""
    sizes = [min(batch, n - i) for i in range(0, n, batch)]
    first, last = shard(len(sizes), rank, world)
    if first and not isinstance(sample_fn, Sampler):
        raise TypeError("a sample set shared over ranks needs a Sampler (one that can skip), such as SeededSampler")
    for k in sizes[:first]:
        sample_fn.skip(k)
    for k in sizes[first:last]:
        x = sample_fn(k).detach().float()
        yield ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)


@torch.no_grad()
def extract(
    extractor: FeatureNetwork, batches: Iterator[torch.Tensor], device: torch.device, logits: bool = True
) -> tuple[np.ndarray, np.ndarray | None]:
    """Features (float64 [N, dims]) and logits (float64 [N, 1008] or None) of uint8 batches."""
    extractor = extractor.place(device)
    feats, all_logits = [], []
    with full_fp32():
        for batch in batches:
            # contiguous: a channels_last batch (decoded HWC images, stacked) would round differently
            x = to_input(batch.to(device).contiguous(), extractor.input_size, extractor.resize)
            f, lg = extractor(x.to(device), logits)
            feats.append(f.double().cpu())
            if lg is not None:
                all_logits.append(lg.double().cpu())
    if not feats:  # no batches (a rank whose share of a small sample set is empty)
        return np.empty((0, extractor.dims)), (np.empty((0, LOGITS)) if logits and extractor.with_logits else None)
    return torch.cat(feats).numpy(), (torch.cat(all_logits).numpy() if all_logits else None)
