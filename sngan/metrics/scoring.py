"""FID/IS/KID for the entry points: from a metric rule and a dataset to a ``Scorer``.

Loads the Inception weights (failing with a one-paragraph error before any
training when they cannot be had), finds or computes the reference statistics
in the cache folder, and scores a ``sample_fn``. The cache file is named by
dataset, split, resolution, image count and feature size, and records the
hash of the weights that made it: statistics from other weights are recomputed,
never mixed in.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sngan.config import DEFAULT_MEASURES, DatasetConfig, InceptionConfig, MetricsConfig, metric_presets
from sngan.metrics.features import FeatureNetwork, extract, generated_batches, uint8_batches
from sngan.metrics.fid import (
    ReferenceStats,
    load_reference,
)
from sngan.metrics.inception import InceptionFeatures, Weights, resolve_weights
from sngan.metrics.measures import MEASURES, measure, named
from sngan.metrics.reference import (
    MetricsError,
    check_protocol,
    protocol_of,
    reference_stats,
    split_of,
    stats_path,
)
from sngan.utils import distributed
from sngan.utils.memory import EvaluationOutOfMemory, noted

Extractor = tuple[FeatureNetwork, Weights]  # a feature network and the weights file it was read from
NETWORKS = ("inception", "dinov2")  # metrics.network: pytorch-fid's Inception, DINOv2 ViT-L/14 (load_extractor)
DINOV2_DIMS = 1024  # ViT-L/14's class token (sngan/metrics/dinov2.py)


def feature_dims(network: str, inception: InceptionConfig) -> int:
    """The feature size of ``network``: Inception's configured block, DINOv2's class token."""
    return inception.dims if network == "inception" else DINOV2_DIMS


def load_extractor(
    inception: InceptionConfig, logits: bool = True, network: str = "inception", resize: str = "legacy"
) -> Extractor:
    """The feature network a rule names (``metrics.network``), with its resize, and its weights file."""
    if network == "dinov2":
        from sngan.metrics import dinov2

        weights = dinov2.resolve_weights(inception.dinov2_weights)
        return dinov2.DinoV2Features.from_file(weights, resize), weights
    weights = resolve_weights(inception.weights)
    return InceptionFeatures.from_file(weights, inception.dims, logits, resize), weights


def extractor_for(rule: MetricsConfig, inception: InceptionConfig) -> Extractor:
    """``load_extractor`` for ``rule`` (logits only where it computes IS)."""
    return load_extractor(inception, "is" in rule.measures, rule.network, rule.resize)


def check_is_label(metrics: MetricsConfig) -> None:
    """A named rule's IS protocol (split size and splits) is its own: a changed one needs a name of its own.
    Checked where numbers are made (the scorer, the dry run), not by ``validate_metrics``: checkpoints written
    before the split size existed store fid_paper and fid10k_test with other IS counts, and still load."""
    presets = metric_presets()
    preset = presets.get(metrics.name)
    if preset is None or preset[3:] == (metrics.is_split_size, metrics.is_splits):
        return
    given, named = metrics, replace(metrics, is_split_size=preset[3], is_splits=preset[4])
    counts = (metrics.n_fake, metrics.real_split, metrics.n_real, metrics.is_split_size, metrics.is_splits)
    same = [name for name, rule in presets.items() if rule == counts]
    use = f"Use metrics={same[0]}, which has them, or give" if same else "Give"
    raise MetricsError(
        f"Invalid configuration: metrics.name={metrics.name} names a fixed rule whose Inception Score is "
        f"{named.is_protocol()}, but the settings say {given.is_protocol()}. {use} the changed rule a name of "
        f"its own (metrics.name=...), so that IS numbers of different split sizes never share a label."
    )


@dataclass
class Scorer:
    """Scores generators by one metric rule. Under torchrun each rank generates and embeds its share of
    the images; rank 0 gathers the features (in the one-process order), scores them and shares the
    numbers, so every rank returns the same dict. Only rank 0 holds the reference statistics."""

    rule: MetricsConfig
    extractor: FeatureNetwork
    weights: Weights
    reference: ReferenceStats | None
    reference_path: Path | None
    device: torch.device
    batch_size: int

    def __call__(self, sample_fn: Callable[[int], torch.Tensor]) -> dict[str, float]:
        """FID, KID and PRDC of the first ``rule.n_fake`` images from ``sample_fn`` (in [-1, 1]), IS of the first
        ``rule.is_images`` (more images are drawn where the IS needs them; the first ``n_fake`` stay the same)."""
        here = distributed.current()
        batches = generated_batches(sample_fn, self.rule.n_generated, self.batch_size, here.rank, here.world)
        # Out of memory on any rank: every rank still meets the others, then all raise it together.
        failures: list[str] = []
        mine = None
        with noted(failures, self.device):
            mine = extract(self.extractor, batches, self.device)
        shares = distributed.gather(failures[0] if failures else mine)
        outcome: dict[str, float] | str | None = None
        if shares is not None:
            failed = [f"rank {rank}: {share}" for rank, share in enumerate(shares) if isinstance(share, str)]
            if failed:
                outcome = failed[0] if here.enabled else failed[0].removeprefix("rank 0: ")
            else:
                assert self.reference is not None, "rank 0 holds the reference statistics"
                features = np.concatenate([f for f, _ in shares])
                logits = None if shares[0][1] is None else np.concatenate([lg for _, lg in shares])
                with noted(failures, self.device):
                    outcome = measure(features, logits, self.reference, self.rule, self.device)
                outcome = named(outcome, self.rule.network)
                outcome = failures[0] if failures else outcome
        outcome = distributed.broadcast(outcome)
        if isinstance(outcome, str):
            raise EvaluationOutOfMemory(outcome)
        return outcome

    def images(self, images: torch.Tensor) -> dict[str, float]:
        """The same numbers for given uint8 images (the caller picks them: FID takes the first ``rule.n_fake``),
        one process. Fewer than the rule's IS splits hold: no IS, and a note says why."""
        if "is" in self.rule.measures and len(images) < self.rule.is_images:  # a smaller split: lower IS
            print(f"note: no Inception Score: rule {self.rule.name} takes it over {self.rule.is_protocol()}; "
                  f"{len(images):,} images cannot fill them.", file=sys.stderr)  # fmt: skip
        features, logits = extract(self.extractor, uint8_batches(images, self.batch_size), self.device)
        return named(measure(features, logits, self.reference, self.rule, self.device), self.rule.network)

    def measures(self) -> dict[str, Any]:
        """What each of the rule's measures that says more than the rule's counts compares (KID's subsets,
        PRDC's k and counts), under its name."""
        described = {name: MEASURES.get(name).describe for name in self.rule.measures}
        said = {name: describe(self.rule, self.reference) for name, describe in described.items() if describe}
        # A rule of other measures than the default four says so (tables of the default keep their header).
        return said | ({"measures": list(self.rule.measures)} if self.rule.measures != DEFAULT_MEASURES else {})

    def describe(self) -> dict[str, Any]:
        """What a number computed by this scorer means: stored beside every saved result."""
        return {
            "rule": self.rule.name,
            "n_fake": self.rule.n_fake,
            "real_split": self.rule.real_split,
            "n_real": (
                self.reference.count if self.reference and self.reference.count is not None else self.rule.n_real
            ),
            "is_split_size": self.rule.is_split_size,
            "is_splits": self.rule.is_splits,
            **self.measures(),
            "dims": self.extractor.dims,
            "reference_stats": str(self.reference_path),
            **protocol_of(self.rule),
            f"{self.rule.network}_weights": str(self.weights.path),
            f"{self.rule.network}_sha256": self.weights.sha256,
        }


def describe_reference(metrics: MetricsConfig, inception: InceptionConfig, dataset: DatasetConfig) -> str:
    """Where ``make_scorer`` takes the reference statistics from, and the rule's IS protocol, said without
    computing them (the dry run)."""
    if metrics.name == "none":
        return "none (metrics=none)" + ("; the synthetic quality measure" if dataset.name == "synthetic" else "")
    check_is_label(metrics)
    generated = f"{metrics.n_fake:,} generated images (IS: {metrics.is_protocol()})"
    if metrics.stats is not None:
        return f"rule {metrics.name}: {generated} against {metrics.stats}"
    split = split_of(dataset, metrics.real_split)
    dims = feature_dims(metrics.network, inception)
    path = stats_path(inception.stats_dir, dataset, split, metrics.n_real, dims, metrics.network, metrics.resize)
    count = "all" if metrics.n_real is None else f"{metrics.n_real:,}"
    state = "cached" if path.is_file() else f"computed at start from {count} {split} images"
    return f"rule {metrics.name}: {generated} against {path} ({state})"


def given_reference(metrics: MetricsConfig, dims: int) -> tuple[ReferenceStats, Path]:
    """The statistics file ``metrics.stats`` names (e.g. a published one), checked against the feature size and
    the protocol it records (a file without one, as pytorch-fid writes them: Inception, legacy resize)."""
    assert metrics.stats is not None
    try:
        ref, path = load_reference(Path(metrics.stats)), Path(metrics.stats)
    except ValueError as exc:
        raise MetricsError(f"metrics.stats: {exc}. Point it at a pytorch-fid .npz (mu, sigma).") from exc
    if ref.mu.shape != (dims,):
        size = "inception.dims is" if metrics.network == "inception" else f"{metrics.network}'s features are"
        raise MetricsError(
            f"metrics.stats '{path}' holds {ref.mu.shape[0]}-d statistics but {size} {dims}; use a file computed "
            f"with the same network and feature size."
        )
    check_protocol(ref, metrics.network, metrics.resize, path)
    return ref, path


def make_scorer(
    metrics: MetricsConfig,
    inception: InceptionConfig,
    dataset: DatasetConfig | None,
    device: torch.device,
    train_images: torch.Tensor | None = None,
    extractor: Extractor | None = None,
    with_reference: bool = True,
) -> Scorer | None:
    """A scorer for ``metrics`` (None for metrics=none); ``train_images`` spares a reload of the
    training split. ``with_reference=False``: one that only embeds images (torchrun's other ranks). ``dataset``
    may be None only where ``metrics.stats`` names the statistics file."""
    if metrics.name == "none":
        return None
    check_is_label(metrics)
    net, weights = extractor or extractor_for(metrics, inception)
    if not with_reference:
        return Scorer(metrics, net, weights, None, None, device, inception.batch_size)
    if metrics.stats is not None:
        ref, path = given_reference(metrics, inception.dims if metrics.network == "inception" else net.dims)
    else:
        assert dataset is not None, "a dataset, or metrics.stats"
        split = split_of(dataset, metrics.real_split)
        images = train_images if split == dataset.split else None
        ref, path, _ = reference_stats(dataset, split, metrics.n_real, inception, net, weights, device, images)
    return Scorer(metrics, net, weights, ref, path, device, inception.batch_size)
