"""Helpers shared by the tests: compose configs like the CLI does, and train
in-process."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from hydra import compose, initialize_config_module
from omegaconf import DictConfig, OmegaConf

from sngan.cli.command_settings import EvaluateConfig, SampleConfig, check_evaluate, check_sample
from sngan.config import DatasetConfig, InceptionConfig, MetricsConfig, TrainConfig, to_container, to_schema

# Threads per test process: the cores shared among pytest-xdist's workers (``-n auto``, pyproject), so
# two workers on 2 cores run one thread each instead of fighting over OpenMP's spinning threads.
WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
THREADS = max(1, (os.cpu_count() or 1) // WORKERS)

# ``[*SMALL_INCEPTION, "sngan.<command>", ...]``: a command's process with the Inception network at 75x75
# (tests/small_inception.py says where that may stand in for ``python -m sngan.<command>``).
SMALL_INCEPTION = [sys.executable, str(Path(__file__).with_name("small_inception.py"))]

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
    from sngan.cli.start import start

    raw = compose_cfg(overrides)
    torch.set_num_threads(THREADS)
    run_dir.mkdir(parents=True, exist_ok=True)
    return start(validated(raw), to_container(raw), run_dir)


# Settings as the command line builds them: the YAML files' values (the one place defaults live), then
# ``values`` in place of some (what a user would override).
def _composed(config_name: str, overrides: list[str] | None = None) -> DictConfig:
    with initialize_config_module(config_module="sngan.configs", version_base="1.3"):
        return compose(config_name=config_name, overrides=overrides or [])


def _with(raw: DictConfig, values: dict[str, Any]) -> DictConfig:
    for key, value in values.items():
        raw[key] = value
    return raw


def evaluate_cfg(**values: Any) -> EvaluateConfig:
    return check_evaluate(_with(_composed("evaluate"), values))


def sample_cfg(**values: Any) -> SampleConfig:
    return check_sample(_with(_composed("sample"), values))


def metrics_cfg(**values: Any) -> MetricsConfig:
    """A metric rule: sngan/configs/metrics/none.yaml with ``values`` (give ``name`` and the counts)."""
    return to_schema(OmegaConf.merge(_composed("evaluate", ["metrics=none"]).metrics, values), MetricsConfig)


def inception_cfg(**values: Any) -> InceptionConfig:
    return to_schema(OmegaConf.merge(_composed("fid_stats").inception, values), InceptionConfig)


def dataset_cfg(name: str, **values: Any) -> DatasetConfig:
    """sngan/configs/dataset/<name>.yaml with ``values``."""
    raw = _composed("fid_stats", [f"dataset={name}"]).dataset
    return to_schema(OmegaConf.merge(raw, values), DatasetConfig)


@dataclass
class Done:
    """What a command line did: its exit code and what it printed."""

    returncode: int
    stdout: str
    stderr: str


def run_command(monkeypatch: Any, capfd: Any, command: str, *args: str, cwd: Path) -> Done:
    """``python -m sngan.<command> ARGS`` in this process, from ``cwd``: its Hydra app as a user meets it (for
    train: the run-folder callback, Hydra's record of the command, train.log, multirun sweeps), at a tenth of a
    process's cost. Tests of what only a process shows (signals, tracebacks at exit, torchrun) start one."""
    import importlib

    monkeypatch.chdir(cwd)
    monkeypatch.setattr("sys.argv", [f"sngan.{command}", *args])
    capfd.readouterr()
    try:
        importlib.import_module(f"sngan.{command}").main()
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    out = capfd.readouterr()
    return Done(code, out.out, out.err)
