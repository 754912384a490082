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


@torch.no_grad()
def class_agreement(
    sample_class: Callable[[int, int], torch.Tensor],
    prototypes: torch.Tensor,
    n_per_class: int = 100,
    threshold: float = GOOD_THRESHOLD,
) -> dict[str, float]:
    """How well a class-conditional generator obeys its label on ``synthetic`` (classes = prototypes):
    ``sample_class(k, n)`` draws n images of class k. Among the good samples (nearest prototype within
    ``threshold``), ``class_accuracy`` is the fraction whose nearest prototype is the requested class and
    ``class_accuracy_min`` the worst class's fraction (over classes with good samples);
    ``class_coverage`` is the fraction of classes with any good sample. An unconditional generator's
    accuracy is about 1/K."""
    hits, goods, per_class = 0, 0, []
    for k in range(len(prototypes)):
        dist = rms_to_prototypes(sample_class(k, n_per_class).float().cpu(), prototypes)
        nearest_dist, nearest = dist.min(dim=1)
        good = nearest_dist <= threshold
        if good.any():
            hit = int((nearest[good] == k).sum())
            hits, goods = hits + hit, goods + int(good.sum())
            per_class.append(hit / int(good.sum()))
    return {
        "class_accuracy": hits / goods if goods else 0.0,
        "class_accuracy_min": min(per_class) if per_class else 0.0,
        "class_coverage": len(per_class) / len(prototypes),
    }
