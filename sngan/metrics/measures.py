"""The measures a metric rule computes from the generated images' Inception features, registered by name
(``metrics.measures`` lists those a rule computes, in order): FID, IS, KID and precision/recall/density/
coverage. To add one: a module that registers a ``Measure`` (imported by ``sngan/metrics/__init__.py``, or named
in ``imports=``) and its name in a rule's ``measures`` (a YAML file of sngan/configs/metrics/); docs/design.md
walks through it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from sngan.config import MetricsConfig
from sngan.metrics.features import full_fp32
from sngan.metrics.fid import (
    ReferenceStats,
    feature_statistics,
    frechet_distance,
    inception_score,
    kernel_inception_distance,
)
from sngan.metrics.prdc import K_DENSITY_COVERAGE, K_PRECISION_RECALL, prdc
from sngan.registry import Registry

Device = torch.device | str


@dataclass(frozen=True)
class Measure:
    """``compute(features, logits, reference, rule, device)``: its numbers (empty where the inputs cannot give
    them) from the features (float64 [n_generated, dims]) and logits ([n_generated, 1008] or None) of the
    rule's generated images, in generation order; ``describe(rule, reference)``: what they compare, stored
    beside every result under the measure's name (None: the rule's own counts say it)."""

    compute: Callable[[np.ndarray, np.ndarray | None, ReferenceStats, MetricsConfig, Device], dict[str, float]]
    describe: Callable[[MetricsConfig, ReferenceStats | None], Any] | None = None


MEASURES: Registry[Measure] = Registry("measure")


def measure(
    features: np.ndarray,
    logits: np.ndarray | None,
    reference: ReferenceStats,
    rule: MetricsConfig,
    device: Device = "cpu",
) -> dict[str, float]:
    """Every measure of ``rule.measures``, in order, of the generated images' ``features`` and ``logits``."""
    out: dict[str, float] = {}
    for name in rule.measures:
        out |= MEASURES.get(name).compute(features, logits, reference, rule, device)
    return out


def named(numbers: dict[str, float], network: str) -> dict[str, float]:
    """The numbers under the names that say their feature network: Inception's as they are (FID, IS, KID: the
    Inception is in the name), another network's with it: ``fid`` -> ``fd_dinov2``, ``kid_mean`` ->
    ``kid_mean_dinov2``, ``precision`` -> ``precision_dinov2``, ..."""
    if network == "inception":
        return numbers
    return {(f"fd_{network}" if key == "fid" else f"{key}_{network}"): value for key, value in numbers.items()}


def headline_key(network: str) -> str:
    """The number a rule's best checkpoint is chosen by: FID, or the Frechet distance on its network."""
    return "fid" if network == "inception" else f"fd_{network}"


def fid(features: np.ndarray, logits: Any, reference: ReferenceStats, rule: MetricsConfig, device: Device) -> dict:
    """FID against ``reference`` of the first ``rule.n_fake`` images."""
    mu, sigma = feature_statistics(features[: rule.n_fake])
    return {"fid": frechet_distance(mu, sigma, reference.mu, reference.sigma)}


def inception_scores(logits: np.ndarray | None, rule: MetricsConfig) -> dict[str, float]:
    """``is_mean`` (and ``is_std`` over two splits or more) of the first ``rule.is_images`` in ``rule.is_splits``
    splits of ``rule.is_split_size``; empty where there are fewer logits than the splits hold (never a
    smaller-split IS under the rule's name)."""
    if logits is None or len(logits) < rule.is_images:
        return {}
    mean, std = inception_score(logits[: rule.is_images], rule.is_splits)  # equal splits of is_split_size
    return {"is_mean": mean} | ({"is_std": std} if rule.is_splits > 1 else {})


def kid(features: np.ndarray, logits: Any, reference: ReferenceStats, rule: MetricsConfig, device: Device) -> dict:
    """KID of the first ``n_fake`` images, where the reference kept real features (ours do; published files not)."""
    if reference.features is None:
        return {}
    mean, std = kernel_inception_distance(
        features[: rule.n_fake], reference.features, rule.kid_subsets, rule.kid_subset_size, device=device
    )
    return {"kid_mean": mean, "kid_std": std}


def prdc_reals(features: np.ndarray, n: int) -> np.ndarray:
    """The real features precision/recall/density/coverage compare with: all the reference kept, or ``n``
    of them drawn with a fixed seed (the same ones every time)."""
    if len(features) <= n:
        return features
    return features[np.sort(np.random.default_rng(0).choice(len(features), n, replace=False))]


def precision_recall(
    features: np.ndarray, logits: Any, reference: ReferenceStats, rule: MetricsConfig, device: Device
) -> dict:
    """Precision, recall (k=3), density and coverage (k=5) of up to ``prdc_n`` generated and real features."""
    if reference.features is None or not rule.prdc_n:
        return {}
    reals, fakes = prdc_reals(reference.features, rule.prdc_n), features[: rule.n_fake][: rule.prdc_n]
    if len(reals) <= K_DENSITY_COVERAGE or len(fakes) <= K_PRECISION_RECALL:  # too few for k
        return {}
    with full_fp32():  # float32 distances, not TF32's: the same numbers in training and in evaluate
        return prdc(reals, fakes, device)


def prdc_counts(rule: MetricsConfig, reference: ReferenceStats | None) -> str | None:
    """What the rule's precision/recall/density/coverage compare, or None where they are not computed."""
    if not rule.prdc_n or reference is None or reference.features is None:
        return None  # off, or a published statistics file: no real features
    reals = min(len(reference.features), rule.prdc_n)
    return (
        f"k={K_PRECISION_RECALL} (precision, recall), k={K_DENSITY_COVERAGE} (density, coverage): {reals:,} real "
        f"vs {min(rule.n_fake, rule.prdc_n):,} generated features"
    )


MEASURES.register("fid")(Measure(fid))
MEASURES.register("is")(Measure(lambda features, logits, reference, rule, device: inception_scores(logits, rule)))
MEASURES.register("kid")(Measure(kid, lambda rule, reference: f"{rule.kid_subsets} subsets of {rule.kid_subset_size}"))
MEASURES.register("prdc")(Measure(precision_recall, prdc_counts))
