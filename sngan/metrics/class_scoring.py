"""Intra-class FID (Miyato & Koyama, 2018) for the entry points: each class's Inception statistics among
the reference images (cached with their features and labels) and the FID of each class's generated
images against them."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from sngan.config import DatasetConfig, InceptionConfig
from sngan.metrics.features import FeatureNetwork, extract, generated_batches
from sngan.metrics.fid import NPZ_ERRORS, feature_statistics, frechet_distance, save_npz, save_reference
from sngan.metrics.inception import Weights
from sngan.metrics.reference import MetricsError, reference_features, stats_path, unwritable_error
from sngan.metrics.scoring import Scorer


def class_reference_stats(
    dataset: DatasetConfig,
    split: str,
    n: int | None,
    num_classes: int,
    inception: InceptionConfig,
    extractor: FeatureNetwork,
    weights: Weights,
    device: torch.device,
) -> tuple[list[tuple[np.ndarray, np.ndarray]], Path]:
    """Inception statistics (mu, sigma) of each class among the reference images of ``split``, for
    intra-class FID, and the cache file they come from.

    The cache keeps the images' features (float32, as the network computes them: n x dims x 4 bytes) and
    labels beside the reference statistics, under the same name with ``_classes``; each class's statistics
    are computed from it (a second per class). The feature pass that fills it also writes the reference
    statistics of the same images where they are missing, so a first intra-class evaluation embeds the
    reference images once."""
    network, resize = extractor.name, extractor.resize  # cached per network and resize, as the statistics are
    path = stats_path(inception.stats_dir, dataset, split, n, extractor.dims, network, resize)
    cache = path.with_name(f"{path.stem}_classes.npz")
    found = _load_class_cache(cache, weights)
    if found is None:
        features, labels = reference_features(
            dataset, split, n, inception.batch_size, extractor, device, cache, labelled=True
        )
        features = features.astype(np.float32)  # exact: the network's own precision
        try:
            save_npz(cache, features=features, labels=labels, weights_sha256=np.array(weights.sha256))
        except OSError as exc:
            raise unwritable_error(cache, exc) from exc
        found = features, labels
        if not path.is_file():
            try:
                save_reference(path, found[0], weights.sha256, network=network, resize=resize)
            except OSError as exc:
                raise unwritable_error(path, exc) from exc
    features, labels = found
    out = []
    for k in range(num_classes):
        members = features[labels == k]
        if len(members) < 2:
            raise MetricsError(
                f"Intra-class FID needs at least 2 real images of every class, but class {k} has {len(members)} "
                f"in the reference set. Use a rule with more real images (metrics.n_real) or drop intra_class."
            )
        out.append(feature_statistics(members))
    return out, cache


def _load_class_cache(cache: Path, weights: Weights) -> tuple[np.ndarray, np.ndarray] | None:
    if not cache.is_file():
        return None
    try:
        with np.load(cache, allow_pickle=False) as f:
            if str(f["weights_sha256"]) == weights.sha256:
                return f["features"], f["labels"]
        print(f"warning: {cache} was computed with other Inception weights; recomputing.", file=sys.stderr)
    except NPZ_ERRORS as exc:
        print(f"warning: cannot read {cache} ({exc}); recomputing.", file=sys.stderr)
    return None


def intra_class_fid(
    scorer: Scorer,
    references: list[tuple[np.ndarray, np.ndarray]],
    sample_class: Callable[[int], Callable[[int], torch.Tensor]],
    n_per_class: int,
) -> dict[str, float]:
    """FID of ``n_per_class`` generated images of each class k (``sample_class(k)`` gives a sample_fn)
    against class k's real statistics; ``intra_fid`` is their mean (Miyato & Koyama's intra-FID),
    ``intra_fid/<k>`` each class's."""
    out = {}
    for k, (mu_real, sigma_real) in enumerate(references):
        batches = generated_batches(sample_class(k), n_per_class, scorer.batch_size)
        features, _ = extract(scorer.extractor, batches, scorer.device, logits=False)
        out[f"intra_fid/{k}"] = frechet_distance(*feature_statistics(features), mu_real, sigma_real)
    return {"intra_fid": float(np.mean(list(out.values())))} | out
