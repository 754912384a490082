"""Fréchet Inception Distance, Kernel Inception Distance and Inception Score
from features and logits, in float64; and the reference-statistics file.

The statistics file is the ``.npz`` pytorch-fid reads (``mu``, ``sigma``), so
published files work here and ours work with ``python -m pytorch_fid``. Ours
add a subset of the real features (for KID) and the hash of the Inception
weights that produced them (so statistics from other weights are never mixed
in silently).
"""

from __future__ import annotations

import os
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

NPZ_ERRORS = (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile)  # what reading a damaged .npz raises
KID_FEATURES_KEPT = 10_000  # real feature rows stored for KID (2048 x 10k float32 = 80 MB)


def feature_statistics(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and (unbiased) covariance, in float64."""
    f = np.asarray(features, dtype=np.float64)
    return f.mean(axis=0), np.cov(f, rowvar=False)


def _sqrt_psd(matrix: np.ndarray) -> np.ndarray:
    values, vectors = np.linalg.eigh((matrix + matrix.T) / 2)
    return (vectors * np.sqrt(np.clip(values, 0, None))) @ vectors.T


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """||mu1 - mu2||^2 + Tr(S1 + S2 - 2 (S1 S2)^(1/2)).

    Tr((S1 S2)^(1/2)) is the sum of square roots of the eigenvalues of
    S1^(1/2) S2 S1^(1/2), a symmetric PSD matrix similar to S1 S2: symmetric
    eigensolvers only, no complex parts, no singular-product retries.
    """
    mu1, mu2 = np.atleast_1d(mu1).astype(np.float64), np.atleast_1d(mu2).astype(np.float64)
    s1, s2 = np.atleast_2d(sigma1).astype(np.float64), np.atleast_2d(sigma2).astype(np.float64)
    if mu1.shape != mu2.shape or s1.shape != s2.shape:
        raise ValueError(f"statistics of different sizes: {mu1.shape} vs {mu2.shape}, {s1.shape} vs {s2.shape}")
    root = _sqrt_psd(s1)
    middle = root @ s2 @ root
    tr_covmean = np.sqrt(np.clip(np.linalg.eigvalsh((middle + middle.T) / 2), 0, None)).sum()
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(s1) + np.trace(s2) - 2 * tr_covmean)


def inception_score(logits: np.ndarray, splits: int = 10) -> tuple[float, float]:
    """exp(E_x KL(p(y|x) || p(y))) in ``splits`` consecutive splits: mean and std over splits."""
    logits = np.asarray(logits, dtype=np.float64)
    logits = logits - logits.max(axis=1, keepdims=True)
    log_p = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    scores = []
    for part in np.array_split(log_p, splits):
        log_py = np.log(np.exp(part).mean(axis=0))
        kl = (np.exp(part) * (part - log_py)).sum(axis=1).mean()
        scores.append(np.exp(kl))
    return float(np.mean(scores)), float(np.std(scores))


def kernel_inception_distance(
    x: np.ndarray,
    y: np.ndarray,
    subsets: int = 100,
    subset_size: int = 1000,
    seed: int = 0,
    device: torch.device | str = "cpu",
) -> tuple[float, float]:
    """Unbiased MMD^2 with the cubic polynomial kernel (x.y / d + 1)^3 (Binkowski et al. 2018),
    averaged over random subsets: mean and std over subsets. Float64 throughout; on ``device``
    (a GPU turns the 100 subsets' kernel products from seconds into milliseconds)."""
    m = min(subset_size, len(x), len(y))
    if m < 2:
        raise ValueError("KID needs at least two samples in each set")
    rng = np.random.default_rng(seed)
    picks = [(rng.choice(len(x), m, replace=False), rng.choice(len(y), m, replace=False)) for _ in range(subsets)]
    xt = torch.as_tensor(np.asarray(x), dtype=torch.float64, device=device)
    yt = torch.as_tensor(np.asarray(y), dtype=torch.float64, device=device)
    d, off = xt.shape[1], m * (m - 1)
    values = []
    for ia, ib in picks:
        a, b = xt[torch.as_tensor(ia, device=xt.device)], yt[torch.as_tensor(ib, device=yt.device)]
        k_aa, k_bb, k_ab = (a @ a.T / d + 1) ** 3, (b @ b.T / d + 1) ** 3, (a @ b.T / d + 1) ** 3
        within = (k_aa.sum() - k_aa.diagonal().sum() + k_bb.sum() - k_bb.diagonal().sum()) / off
        values.append(within - 2 * k_ab.mean())
    result = torch.stack(values).cpu().numpy()
    return float(result.mean()), float(result.std())


@dataclass
class ReferenceStats:
    mu: np.ndarray
    sigma: np.ndarray
    features: np.ndarray | None = None  # real features kept for KID (None for published files)
    weights_sha256: str | None = None  # None for published files
    count: int | None = None
    network: str = "inception"  # the feature network and resize that made them (files without: pytorch-fid's)
    resize: str = "legacy"


def save_reference(
    path: Path, features: np.ndarray, weights_sha256: str, seed: int = 0, network: str = "inception",
    resize: str = "legacy",
) -> ReferenceStats:  # fmt: skip
    """Statistics of ``features`` written atomically to ``path`` (.npz) and returned, with the protocol that made
    them (the weights' hash, the network, the resize)."""
    mu, sigma = feature_statistics(features)
    keep = features
    if len(features) > KID_FEATURES_KEPT:
        keep = features[np.sort(np.random.default_rng(seed).choice(len(features), KID_FEATURES_KEPT, replace=False))]
    ref = ReferenceStats(mu, sigma, keep.astype(np.float32), weights_sha256, len(features), network, resize)
    save_npz(
        path, mu=ref.mu, sigma=ref.sigma, features=ref.features,
        weights_sha256=np.array(weights_sha256), count=np.array(len(features)),
        network=np.array(network), resize=np.array(resize),
    )  # fmt: skip
    return ref


def save_npz(path: Path, **arrays: np.ndarray) -> None:
    """Write ``arrays`` to ``path`` (.npz) atomically: a temporary file renamed over it, removed on failure."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp{os.getpid()}.npz")
    try:
        np.savez(tmp, **arrays)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def load_reference(path: Path) -> ReferenceStats:
    """Read a statistics file (ours or pytorch-fid's); ValueError names what is wrong."""
    try:
        with np.load(path, allow_pickle=False) as f:
            if "mu" not in f or "sigma" not in f:
                raise ValueError(f"it has keys {sorted(f.files)} but needs 'mu' and 'sigma'")
            return ReferenceStats(
                f["mu"].astype(np.float64),
                f["sigma"].astype(np.float64),
                f["features"] if "features" in f else None,
                str(f["weights_sha256"]) if "weights_sha256" in f else None,
                int(f["count"]) if "count" in f else None,
                str(f["network"]) if "network" in f else "inception",
                str(f["resize"]) if "resize" in f else "legacy",
            )
    except NPZ_ERRORS as exc:
        raise ValueError(f"cannot read statistics file '{path}': {exc}") from exc
