"""An Inception-free quality measure for the ``synthetic`` dataset.

A generated sample is *good* when its RMS pixel distance (in [-1, 1] units) to
the nearest prototype is at most ``threshold`` (0.25: half the minimum
separation the dataset guarantees, so the nearest prototype is unambiguous).
*quality* is the fraction of good samples; a prototype (mode) is *covered*
when at least N / (4K) good samples are nearest to it.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

GOOD_THRESHOLD = 0.25


def rms_to_prototypes(samples: torch.Tensor, prototypes: torch.Tensor) -> torch.Tensor:
    """[N, K] matrix of RMS distances between samples and prototypes."""
    flat_s = samples.reshape(len(samples), -1).double()
    flat_p = prototypes.reshape(len(prototypes), -1).double().to(flat_s.device)
    return (torch.cdist(flat_s, flat_p) ** 2 / flat_s.shape[1]).sqrt()


def synthetic_quality(
    samples: torch.Tensor, prototypes: torch.Tensor, threshold: float = GOOD_THRESHOLD
) -> dict[str, float]:
    """Quality, modes covered (count and fraction) and median nearest distance."""
    dist = rms_to_prototypes(samples, prototypes)
    nearest_dist, nearest = dist.min(dim=1)
    good = nearest_dist <= threshold
    k = len(prototypes)
    per_mode = torch.bincount(nearest[good], minlength=k)
    covered = int((per_mode >= len(samples) / (4 * k)).sum())
    return {
        "quality": float(good.float().mean()),
        "modes_covered": float(covered),
        "mode_coverage": covered / k,
        "median_distance": float(nearest_dist.median()),
    }


@torch.no_grad()
def evaluate_synthetic(
    sample_fn: Callable[[int], torch.Tensor], prototypes: torch.Tensor, n: int = 1000, batch: int = 250
) -> dict[str, float]:
    """Draw ``n`` samples (in [-1, 1]) through ``sample_fn`` in batches and score them."""
    chunks = [sample_fn(min(batch, n - i)).float().cpu() for i in range(0, n, batch)]
    return synthetic_quality(torch.cat(chunks), prototypes)
