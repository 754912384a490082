"""``python -m sngan.fid_stats``: a dataset's reference statistics, computed once and cached.

    python -m sngan.fid_stats dataset=cifar10                  # whole training split
    python -m sngan.fid_stats dataset=cifar10 split=test n=10000
    python -m sngan.fid_stats dataset=folder dataset.root=/data/faces dataset.resolution=48

The file (``inception.stats_dir``/<dataset>_<split>_<res>px_<n>.npz) holds ``mu`` and
``sigma`` as pytorch-fid reads them, plus real features for KID; a file that is
already there (made with the same Inception weights) is reused, not recomputed.
"""

from __future__ import annotations

import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

from sngan.cli.command_settings import FidStatsConfig, check_fid_stats
from sngan.cli.errors import run_or_exit
from sngan.cli.hydra_checks import typos_named
from sngan.cli.provenance import resolve_device
from sngan.config import ConfigError
from sngan.data import native_resolution
from sngan.metrics.reference import reference_stats, stats_path
from sngan.metrics.scoring import feature_dims, load_extractor
from sngan.training.speed import keep_freed_memory
from sngan.training.stopping import report_stops_with
from sngan.utils.outputs import stamp, written_report


def compute(cfg: FidStatsConfig) -> tuple[Path, bool, int]:
    """(statistics file, computed now, image count)."""
    device = resolve_device(cfg.device)
    dataset = cfg.dataset
    dataset.resolution = dataset.resolution or native_resolution(dataset.name)
    if dataset.resolution is None:
        raise ConfigError(
            f"Invalid configuration: dataset '{dataset.name}' has no native resolution; set "
            f"dataset.resolution to the size your model generates (32 or 48)."
        )
    split = cfg.split or dataset.split
    dims = feature_dims(cfg.network, cfg.inception)
    before = stamp([stats_path(cfg.inception.stats_dir, dataset, split, cfg.n, dims, cfg.network, cfg.resize)])
    report_stops_with(lambda: written_report(before))  # the file is written whole at the end, or not at all
    extractor, weights = load_extractor(cfg.inception, False, cfg.network, cfg.resize)
    ref, path, computed = reference_stats(dataset, split, cfg.n, cfg.inception, extractor, weights, device)
    return path, computed, ref.count or 0


@typos_named(FidStatsConfig)
@hydra.main(version_base="1.3", config_path="pkg://sngan.configs", config_name="fid_stats")
def main(raw: DictConfig) -> None:
    keep_freed_memory()  # malloc keeps large freed blocks for reuse (sngan/training/speed.py)
    path, computed, count = run_or_exit(lambda: compute(check_fid_stats(raw)))
    state = "computed" if computed else "already cached (same Inception weights), reused"
    print(f"Reference statistics of {count} images {state}: {path}", file=sys.stderr)
    print(path)


if __name__ == "__main__":
    main()
