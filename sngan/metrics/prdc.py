"""Improved precision and recall (Kynkäänniemi et al., NeurIPS 2019) and density and coverage (Naeem et al.,
ICML 2020) of generated features against real ones.

Each real (generated) feature gets a ball reaching its k-th nearest real (generated) neighbour.
Precision: the share of generated features inside some real ball; recall: the share of real features
inside some generated ball (k = 3 for both). Density: the real balls holding each generated feature,
counted, averaged and divided by k; coverage: the share of real features whose ball holds their
nearest generated one (k = 5 for both). A mode-collapsed generator keeps its precision and loses
recall and coverage.

Distances are squared Euclidean, ``|x|^2 + |y|^2 - 2 x.y`` on features centred on the real mean,
in float32 on the scorer's device, a block of rows at a time: memory is ``block x N`` floats, never
``N x N``, so 10k x 10k fits on a GPU and on a small CPU machine. Comparisons are strict, as in the
``prdc`` package (Naeem et al.'s own code), which the tests check these numbers against.
"""

from __future__ import annotations

import numpy as np
import torch

K_PRECISION_RECALL = 3
K_DENSITY_COVERAGE = 5
BLOCK_FLOATS = 1 << 26  # floats in one block of the distance matrix (256 MB in float32)


def _squared_distances(a: torch.Tensor, a_norms: torch.Tensor, b: torch.Tensor, b_norms: torch.Tensor) -> torch.Tensor:
    return (a_norms[:, None] + b_norms[None, :] - 2 * (a @ b.T)).clamp_(min=0)


def block_rows(cols: int) -> int:
    """Rows of a distance block against ``cols`` columns."""
    return max(1, BLOCK_FLOATS // max(cols, 1))


def kth_neighbour_radii(x: torch.Tensor, ks: tuple[int, ...]) -> dict[int, torch.Tensor]:
    """Squared distance from each row of ``x`` to its k-th nearest other row, for each k in ``ks``
    (the k + 1 smallest distances include the row's own, zero)."""
    norms = x.square().sum(1)
    top = max(ks) + 1
    out: dict[int, list[torch.Tensor]] = {k: [] for k in ks}
    step = block_rows(len(x))
    for i in range(0, len(x), step):
        nearest = _squared_distances(x[i : i + step], norms[i : i + step], x, norms)
        nearest = nearest.topk(top, dim=1, largest=False).values  # ascending
        for k in ks:
            out[k].append(nearest[:, k])
    return {k: torch.cat(v) for k, v in out.items()}


def prdc(
    real: np.ndarray | torch.Tensor,
    fake: np.ndarray | torch.Tensor,
    device: torch.device | str = "cpu",
    k_pr: int = K_PRECISION_RECALL,
    k_dc: int = K_DENSITY_COVERAGE,
) -> dict[str, float]:
    """``precision``, ``recall`` (k = ``k_pr``), ``density`` and ``coverage`` (k = ``k_dc``) of the
    generated features ``fake`` [M, D] against the real features ``real`` [N, D]."""
    if len(real) <= max(k_pr, k_dc) or len(fake) <= k_pr:
        raise ValueError(
            f"precision/recall/density/coverage need more than {max(k_pr, k_dc)} real and {k_pr} generated "
            f"features; got {len(real)} and {len(fake)}"
        )
    r = torch.as_tensor(real, dtype=torch.float32, device=device)
    f = torch.as_tensor(fake, dtype=torch.float32, device=device)
    centre = r.mean(0, keepdim=True)  # smaller norms: less cancellation in |x|^2 + |y|^2 - 2 x.y
    r, f = r - centre, f - centre
    real_radii = kth_neighbour_radii(r, tuple(sorted({k_pr, k_dc})))
    fake_radii = kth_neighbour_radii(f, (k_pr,))[k_pr]
    r_norms, f_norms = r.square().sum(1), f.square().sum(1)
    in_real_pr = torch.zeros((), dtype=torch.int64, device=r.device)  # generated features inside a real ball
    in_real_dc = torch.zeros((), dtype=torch.int64, device=r.device)  # (generated, real ball) pairs, k_dc
    recalled = torch.zeros(len(r), dtype=torch.bool, device=r.device)  # reals inside a generated ball
    nearest_fake = torch.full((len(r),), float("inf"), device=r.device)  # each real's nearest generated one
    step = block_rows(len(r))
    for i in range(0, len(f), step):
        d = _squared_distances(f[i : i + step], f_norms[i : i + step], r, r_norms)  # [block, N]
        in_real_pr += (d < real_radii[k_pr][None, :]).any(1).sum()
        in_real_dc += (d < real_radii[k_dc][None, :]).sum()
        recalled |= (d < fake_radii[i : i + step, None]).any(0)
        nearest_fake = torch.minimum(nearest_fake, d.min(0).values)
    return {
        "precision": in_real_pr.item() / len(f),
        "recall": recalled.sum().item() / len(r),
        "density": in_real_dc.item() / (k_dc * len(f)),
        "coverage": (nearest_fake < real_radii[k_dc]).sum().item() / len(r),
    }
