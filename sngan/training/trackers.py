"""Trackers beside TensorBoard: Weights & Biases and MLflow (``logger=wandb|mlflow``, optional extras).

A ``Mirror`` receives what the run's ``Tracker`` writes to TensorBoard: scalars (each with the training
step), sample grids, histograms where the tracker has them (W&B does, MLflow does not) and the resolved
config once. Its run id goes into every checkpoint (``Run.tracker_run``), so that a resumed run
continues the same tracker run. Neither package is imported unless asked for; asking for one that is not
installed is a one-paragraph error naming the install command (``check_installed``, at start-up), and so
is a tracker run that cannot start (``wandb_error``, ``mlflow_error``: what failed and what to do).
"""

from __future__ import annotations

import importlib.util
import os
import re
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from sngan.config import ConfigError, LoggerConfig

PACKAGES = {"wandb": ("wandb", "wandb"), "mlflow": ("mlflow", "mlflow")}  # logger: (module, extra)


class Mirror(Protocol):
    name: str
    run_id: str

    def scalars(self, values: Mapping[str, float], step: int) -> None: ...

    def image(self, name: str, image: np.ndarray, step: int) -> None: ...  # (H, W, C) uint8

    def histogram(self, name: str, values: np.ndarray, step: int) -> None: ...

    def close(self, ok: bool) -> None: ...


def check_installed(name: str) -> None:
    """Refuse a logger whose package is missing, before anything is loaded or written."""
    if name not in PACKAGES:
        return
    module, extra = PACKAGES[name]
    if importlib.util.find_spec(module) is None:
        raise ConfigError(
            f"logger={name} needs the {module} package, which is not installed in this environment. Install it "
            f'with pip install -e ".[{extra}]" (or pip install {module}), or train with logger=tensorboard '
            f"(TensorBoard and metrics.jsonl are always written)."
        )


def open_mirror(
    settings: LoggerConfig, run_name: str, config: dict[str, Any], run_dir: Path, resumed: dict[str, str] | None
) -> Mirror | None:
    """The tracker ``settings`` ask for (None for TensorBoard alone), continuing ``resumed`` (the run's
    checkpointed ``{"logger": ..., "id": ...}``) where it was made by the same logger."""
    if settings.name == "tensorboard":
        return None
    check_installed(settings.name)
    run_id = resumed["id"] if resumed and resumed.get("logger") == settings.name else None
    if settings.name == "wandb":
        return WandbMirror(settings, run_name, config, run_dir, run_id)
    return MlflowMirror(settings, run_name, config, run_id)


class WandbMirror:
    """A W&B run: files in the run folder's wandb/; our training step is the x-axis of every chart
    (``train/step``), so a resumed run logging steps again after a crash appends instead of being refused."""

    name = "wandb"

    def __init__(
        self, settings: LoggerConfig, run_name: str, config: dict[str, Any], run_dir: Path, run_id: str | None
    ) -> None:
        import wandb

        self.wandb = wandb
        # W&B's rule: an explicit mode wins, else $WANDB_MODE, else its settings files, else online. Read here:
        # W&B reads the environment once a process (wandb.setup), and a second run in one process must follow it.
        mode = settings.mode or os.environ.get("WANDB_MODE") or None
        try:
            self.run = wandb.init(
                project=settings.project, entity=settings.entity, name=run_name, dir=str(run_dir),
                mode=mode, id=run_id, resume="allow", config=config, tags=list(settings.tags),
                settings=wandb.Settings(console="off"),  # our stderr stays ours (train.log copies it)
            )  # fmt: skip
        except Exception as exc:  # UsageError (no API key), CommError (no network), a bad $WANDB_MODE ...
            raise wandb_error(settings.mode, exc) from None
        self.run_id = self.run.id
        self.run.define_metric("train/step")
        self.run.define_metric("*", step_metric="train/step")

    def scalars(self, values: Mapping[str, float], step: int) -> None:
        self.run.log({**{k: float(v) for k, v in values.items()}, "train/step": step})

    def image(self, name: str, image: np.ndarray, step: int) -> None:
        self.run.log({name: self.wandb.Image(image), "train/step": step})

    def histogram(self, name: str, values: np.ndarray, step: int) -> None:
        self.run.log({name: self.wandb.Histogram(values), "train/step": step})

    def close(self, ok: bool) -> None:
        self.run.finish(exit_code=0 if ok else 1)


class MlflowMirror:
    """An MLflow run in experiment ``logger.project``: scalars as metrics at the training step, grids as
    step images, the resolved config as the run's parameters (flattened, at its start) and as the
    artifact config.yaml. MLflow has no histograms: they stay in TensorBoard."""

    name = "mlflow"

    def __init__(self, settings: LoggerConfig, run_name: str, config: dict[str, Any], run_id: str | None) -> None:
        from mlflow.entities import Param
        from mlflow.tracking import MlflowClient

        try:
            self.client = MlflowClient(tracking_uri=settings.tracking_uri)
            experiment = self.client.get_experiment_by_name(settings.project)
            eid = experiment.experiment_id if experiment else self.client.create_experiment(settings.project)
            if run_id is None:
                tags = {tag: "true" for tag in settings.tags}
                run_id = self.client.create_run(eid, run_name=run_name, tags=tags).info.run_id
                params = [Param(k, str(v)[:6000]) for k, v in flatten(config).items()]
                for i in range(0, len(params), 100):  # MLflow takes at most 100 parameters a call
                    self.client.log_batch(run_id, params=params[i : i + 100])
            else:
                self.client.update_run(run_id, status="RUNNING")
            self.client.log_dict(run_id, config, "config.yaml")
        except Exception as exc:  # MlflowException, or the connection's own error for a server
            raise mlflow_error(self.client_uri(settings), exc) from None
        self.run_id = run_id

    @staticmethod
    def client_uri(settings: LoggerConfig) -> str:
        if settings.tracking_uri:
            return settings.tracking_uri
        import mlflow

        return str(mlflow.get_tracking_uri())

    def scalars(self, values: Mapping[str, float], step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        metrics = [Metric(k, float(v), now, step) for k, v in values.items()]
        for i in range(0, len(metrics), 1000):  # MLflow's limit a call
            self.client.log_batch(self.run_id, metrics=metrics[i : i + 1000])

    def image(self, name: str, image: np.ndarray, step: int) -> None:
        self.client.log_image(self.run_id, image, key=name, step=step)

    def histogram(self, name: str, values: np.ndarray, step: int) -> None:
        pass  # MLflow has no histograms

    def close(self, ok: bool) -> None:
        self.client.set_terminated(self.run_id, status="FINISHED" if ok else "FAILED")


def wandb_error(mode: str | None, exc: Exception) -> ConfigError:
    """W&B's start-up failure as one paragraph: what failed, and the three ways on."""
    effective = mode or os.environ.get("WANDB_MODE") or "online"
    source = "logger.mode" if mode else "$WANDB_MODE" if os.environ.get("WANDB_MODE") else "W&B's default"
    return ConfigError(
        f"logger=wandb could not start its W&B run in {effective} mode ({source}): {type(exc).__name__}: "
        f"{whole_sentences(str(exc))} To log without an account or network, set WANDB_MODE=offline (or "
        f"logger.mode=offline; `wandb sync` uploads the files later); to log online, run `wandb login` (or set "
        f"WANDB_API_KEY) on a machine that reaches the W&B server; or train with logger=tensorboard (TensorBoard "
        f"and metrics.jsonl are always written)."
    )


def mlflow_error(uri: str, exc: Exception) -> ConfigError:
    """MLflow's start-up failure as one paragraph; a refused file store names the switch that allows it."""
    if "MLFLOW_ALLOW_FILE_STORE" in str(exc):  # MLflow 3 keeps its file store (file:./mlruns) behind it
        return ConfigError(
            f"logger=mlflow could not open its run at tracking URI {uri}: MLflow 3 refuses its file store unless "
            f"MLFLOW_ALLOW_FILE_STORE=true is set. Set MLFLOW_ALLOW_FILE_STORE=true to use that folder, or set "
            f"logger.tracking_uri to a running MLflow server (http://host:5000) or a database store "
            f"(sqlite:///mlflow.db, which needs the full mlflow package, not mlflow-skinny), or train with "
            f"logger=tensorboard."
        )
    return ConfigError(
        f"logger=mlflow could not open its run at tracking URI {uri}: {type(exc).__name__}: "
        f"{whole_sentences(str(exc))} Set logger.tracking_uri to a running MLflow server (http://host:5000) or a "
        f"store this installation supports, or train with logger=tensorboard."
    )


def whole_sentences(text: str, limit: int = 300) -> str:
    """The first line of ``text``, shortened to the whole sentences within ``limit`` characters where it is
    longer (kept whole where its first sentence is longer still): never cut mid-word or mid-URL."""
    first = (text.strip().splitlines() or ["(no message)"])[0].strip()
    if len(first) > limit:
        ends = [m.end() for m in re.finditer(r"[.!?](?=\s)", first) if m.end() <= limit]
        first = first[: ends[-1]] if ends else first
    return first if first.endswith((".", "!", "?")) else first + "."


def flatten(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"train": {"steps": 5}}`` -> ``{"train.steps": 5}``."""
    out: dict[str, Any] = {}
    for key, value in config.items():
        if isinstance(value, Mapping):
            out |= flatten(value, f"{prefix}{key}.")
        else:
            out[f"{prefix}{key}"] = value
    return out
