"""Helpers shared by the tests: compose configs like the CLI does, and train
in-process."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from hydra import compose, initialize_config_module
from omegaconf import DictConfig

from sngan.config import TrainConfig, to_container

# Threads per test process: the cores shared among pytest-xdist's workers (``-n auto``, pyproject), so
# two workers on 2 cores run one thread each instead of fighting over OpenMP's spinning threads.
WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
THREADS = max(1, (os.cpu_count() or 1) // WORKERS)

# Small, fast settings for training tests: a narrow CNN on synthetic data.
TINY = [
    "experiment=quickstart",
    "model.width=0.125",
    "train.log_every=1",
    "train.sample_every=2",
    "train.eval_every=2",
    "train.eval_samples=100",
    "train.checkpoint_every=2",
    "train.batch_size_d=8",
    "train.batch_size_g=8",
    "train.grid_size=4",
    "dataset.size=200",
]


def compose_cfg(overrides: list[str]) -> DictConfig:
    with initialize_config_module(config_module="sngan.configs", version_base="1.3"):
        return compose(config_name="train", overrides=overrides)


def validated(raw: DictConfig) -> TrainConfig:
    from sngan.cli.settings import check_train

    return check_train(raw)


def run_training(run_dir: Path, overrides: list[str]) -> dict[str, Any]:
    """Compose, validate and train in this process, as ``python -m sngan.train`` would."""
    from sngan.train import start

    raw = compose_cfg(overrides)
    torch.set_num_threads(THREADS)
    run_dir.mkdir(parents=True, exist_ok=True)
    return start(validated(raw), to_container(raw), run_dir)
