"""What generators are fed: latents z, and class labels drawn uniformly or with the training set's class mix."""

from __future__ import annotations

import torch


def sample_z(n: int, z_dim: int, device: torch.device) -> torch.Tensor:
    return torch.randn(n, z_dim, device=device)


def label_cdf(counts: list[int] | None, device: torch.device | str = "cpu") -> torch.Tensor | None:
    """The cumulative class distribution that fakes' labels are drawn from, given the training set's
    image count per class: None where every class has as many images (then labels are drawn uniformly,
    as before class frequencies were known) or where the run is unconditional."""
    if not counts or len(set(counts)) == 1:
        return None
    cdf = torch.tensor(counts, dtype=torch.float64).cumsum(0)
    return (cdf / cdf[-1]).to(torch.float32).to(device)


def sample_y(
    n: int,
    num_classes: int,
    device: torch.device,
    cdf: torch.Tensor | None = None,
    rng: torch.Generator | None = None,
) -> torch.Tensor | None:
    """Class labels for n fakes; None when unconditional. Uniform over the classes without ``cdf``;
    with one (``label_cdf``), each class as often as in the training set: the inverse CDF of uniform
    draws, with no host synchronization (CUDA graphs capture it)."""
    if not num_classes:
        return None
    if cdf is None:
        return torch.randint(0, num_classes, (n,), device=device, generator=rng)
    u = torch.rand(n, device=device, generator=rng)
    return torch.searchsorted(cdf, u, right=True).clamp_(max=num_classes - 1)
