"""The built-in synthetic dataset: K smooth colour prototypes, each image one of them plus a small
colour shift, so sample quality and mode coverage can be measured exactly (sngan/metrics/synthetic.py)."""

from __future__ import annotations

import torch
from torch.nn import functional as F

from sngan.config import DatasetConfig
from sngan.data.dataset import ImageData, to_uint8
from sngan.data.registry import DATASETS, Source


def make_prototypes(k: int, resolution: int, seed: int) -> torch.Tensor:
    """K smooth random colour fields in [-0.9, 0.9], each with pixel std >= 0.3
    and pairwise RMS distance >= 0.5; redrawn (seeded) until both hold."""
    gen = torch.Generator().manual_seed(seed)
    for _ in range(1000):
        coarse = torch.randn(k, 3, 4, 4, generator=gen)
        protos = F.interpolate(coarse, size=(resolution, resolution), mode="bicubic", align_corners=False)
        protos = protos - protos.mean(dim=(1, 2, 3), keepdim=True)
        protos = (0.5 * protos / protos.std(dim=(1, 2, 3), keepdim=True)).clamp(-0.9, 0.9)
        flat = protos.flatten(1)
        pair = torch.cdist(flat, flat) / flat.shape[1] ** 0.5 + 10 * torch.eye(k)
        if protos.flatten(1).std(dim=1).min() >= 0.3 and pair.min() >= 0.5:
            return protos
    raise RuntimeError("could not draw well-separated prototypes")  # pragma: no cover


def make_synthetic(n: int, resolution: int, k: int = 10, seed: int = 0, shift: float = 0.1) -> ImageData:
    """N images, each a prototype (uniformly chosen) plus a global colour shift
    drawn uniformly from [-shift, shift] per channel: a one-parameter-per-
    channel variation, small against the 0.25 'good' radius."""
    protos = make_prototypes(k, resolution, seed)
    gen = torch.Generator().manual_seed(seed + 1)
    labels = torch.randint(0, k, (n,), generator=gen)
    shifts = (torch.rand(n, 3, 1, 1, generator=gen) * 2 - 1) * shift
    names = [f"prototype_{i}" for i in range(k)]
    return ImageData(to_uint8(protos[labels] + shifts), protos, labels, names, uniform_classes=True)


def synthetic(dataset: DatasetConfig, split: str) -> ImageData:
    """``dataset.size`` images of ``dataset.modes`` prototypes (one split: made, never read)."""
    return make_synthetic(dataset.size, dataset.resolution or 32, dataset.modes, dataset.seed)


DATASETS.register("synthetic")(
    Source(
        synthetic, tag=lambda d: f"synthetic-k{d.modes}-n{d.size}-s{d.seed}",
        more_images="make the synthetic dataset larger (dataset.size)",
    )
)  # fmt: skip
