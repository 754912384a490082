"""The reference side of FID/KID/PRDC: which images of which split (``reference_index``), where their
statistics are cached (``stats_path``: named by dataset, split, resolution, image count and feature size), and
their features, computed once (``reference_features``: the one feature pass of the reference images, for the
statistics and for intra-class FID's per-class cache). A cache file records the hash of the weights that made
it: statistics from other weights are recomputed, never mixed in."""

from __future__ import annotations

import errno
import os
import sys
from pathlib import Path

import numpy as np
import torch

from sngan.config import DatasetConfig, InceptionConfig, MetricsConfig
from sngan.data import DATASETS, load_split
from sngan.metrics.features import FeatureNetwork, extract, uint8_batches
from sngan.metrics.fid import ReferenceStats, load_reference, save_reference
from sngan.metrics.inception import Weights
from sngan.utils.outputs import OutputError, ensure_folder


class MetricsError(RuntimeError):
    """Metrics cannot be computed as configured; the message says what to do."""


def split_of(dataset: DatasetConfig, real_split: str) -> str:
    """The dataset split a rule compares with: ``train`` is the split the model trains on."""
    return dataset.split if real_split == "train" else "test"


def dataset_tag(dataset: DatasetConfig) -> str:
    tag = DATASETS.get(dataset.name).tag
    return tag(dataset) if tag is not None else dataset.name


def reference_index(total: int, n: int | None, dataset: DatasetConfig) -> slice | torch.Tensor:
    """Which of a split's ``total`` images make its reference set: all (``n`` None), the first ``n`` in
    file order (CIFAR's and STL-10's files hold the images in no particular class order), or, for a source
    whose file order is by class (an image folder: its sorted subfolders), ``n`` spread evenly over that order,
    so that every class contributes in proportion to its size."""
    if n is None:
        return slice(None)
    return torch.arange(n) * total // n if DATASETS.get(dataset.name).spread else slice(0, n)


def protocol_of(rule: MetricsConfig) -> dict[str, str]:
    """A rule's feature network and resize where they are not pytorch-fid's (Inception, legacy resize), which
    every earlier table and statistics file implies: stored beside its numbers and in its statistics."""
    if (rule.network, rule.resize) == ("inception", "legacy"):
        return {}
    return {"network": rule.network, "resize": rule.resize}


def stats_path(
    stats_dir: str, dataset: DatasetConfig, split: str, n: int | None, dims: int, network: str = "inception",
    resize: str = "legacy",
) -> Path:  # fmt: skip
    """The cache file of a reference set's statistics: named by dataset, split, resolution and count, and by the
    feature size (Inception's other blocks), network and resize where they are not pytorch-fid's."""
    count = "all" if n is None else f"{n}-spread" if DATASETS.get(dataset.name).spread else str(n)
    name = f"{dataset_tag(dataset)}_{split.replace('+', '-')}_{dataset.resolution}px_{count}"
    if network == "inception":
        name += "" if dims == 2048 else f"_{dims}d"
    else:
        name += f"_{network}"
    return Path(stats_dir) / (name + ("" if resize == "legacy" else f"_{resize}") + ".npz")


def reference_stats(
    dataset: DatasetConfig,
    split: str,
    n: int | None,
    inception: InceptionConfig,
    extractor: FeatureNetwork,
    weights: Weights,
    device: torch.device,
    images: torch.Tensor | None = None,
) -> tuple[ReferenceStats, Path, bool]:
    """Cached statistics of ``n`` images of ``split`` (all if None; which ones: ``reference_index``) under the
    extractor's network and resize: (stats, file, computed now)."""
    network, resize = extractor.name, extractor.resize
    path = stats_path(inception.stats_dir, dataset, split, n, extractor.dims, network, resize)
    if path.is_file():
        try:
            ref = load_reference(path)
            check_protocol(ref, network, resize, path)
            if ref.weights_sha256 == weights.sha256:
                return ref, path, False
            print(f"warning: {path} was computed with other Inception weights; recomputing.", file=sys.stderr)
        except ValueError as exc:
            print(f"warning: {exc}; recomputing.", file=sys.stderr)
    if path.is_dir():  # found now, not once the features are computed
        check_writable(path.parent)
        raise unwritable_error(path, IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR)))
    features, _ = reference_features(dataset, split, n, inception.batch_size, extractor, device, path, images)
    try:
        return save_reference(path, features, weights.sha256, network=network, resize=resize), path, True
    except OSError as exc:
        raise unwritable_error(path, exc) from exc


def reference_features(
    dataset: DatasetConfig,
    split: str,
    n: int | None,
    batch_size: int,
    extractor: FeatureNetwork,
    device: torch.device,
    into: Path,
    images: torch.Tensor | None = None,
    labelled: bool = False,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Inception features of the reference images (``n`` of ``split``: ``reference_index``), to be written to
    ``into`` (whose folder is checked first), and with ``labelled`` their labels (a split without them is
    refused). ``images``: the split's images where the caller has them (the training split)."""
    check_writable(into.parent)
    labels = None
    if images is None or labelled:
        data = load_split(dataset, split)
        images, labels = data.images, data.labels
        if labelled and labels is None:
            raise MetricsError(
                f"Intra-class FID compares each class with its real images, but the '{split}' split of "
                f"'{dataset.name}' has no labels. Use a rule whose metrics.real_split is labelled, or drop intra_class."
            )
    if n is not None:
        check_enough(images, n, split, dataset)
        index = reference_index(len(images), n, dataset)
        images, labels = images[index], labels[index] if labels is not None else None
    what = "per-class reference statistics" if labelled else "reference statistics"
    print(f"Computing {what} of {len(images)} images into {into} ...", file=sys.stderr)
    features, _ = extract(extractor, uint8_batches(images, batch_size), device, logits=False)
    return features, labels.numpy() if labels is not None else None


def check_protocol(ref: ReferenceStats, network: str, resize: str, path: Path) -> None:
    """Statistics made under another feature network or resize are refused, never compared with."""
    if (ref.network, ref.resize) != (network, resize):
        raise MetricsError(
            f"The statistics file '{path}' was made with network={ref.network} resize={ref.resize}, but the rule "
            f"asks for network={network} resize={resize}: its numbers would not be comparable. Remove the file "
            f"(it is made again), point inception.stats_dir elsewhere, or use a rule of its protocol."
        )


def check_writable(folder: Path) -> None:
    """A cache folder that cannot be written fails now, not after the features are computed."""
    try:
        ensure_folder(folder)
    except OutputError as exc:
        raise MetricsError(f"Cannot write reference statistics: {exc} (inception.stats_dir)") from exc


def check_enough(images: torch.Tensor, n: int, split: str, dataset: DatasetConfig) -> None:
    if len(images) < n:
        raise MetricsError(
            f"The reference set needs {n} images of the '{split}' split of '{dataset.name}', "
            f"but it holds only {len(images)}. Use a rule with fewer real images, under a name of your own "
            f"(e.g. metrics.name=fid_all_{split} metrics.n_real=null: all {len(images)} of them), "
            f"metrics=none, or a larger dataset."
        )


def unwritable_error(path: Path, exc: OSError) -> MetricsError:
    return MetricsError(
        f"Cannot write reference statistics to '{path}' ({exc.strerror or exc}). Point inception.stats_dir "
        f"at a writable folder with free space."
    )
