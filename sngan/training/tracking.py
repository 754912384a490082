"""One TensorBoard writer per run, plus the run's ``metrics.jsonl``, and optionally a tracker beside them
(W&B or MLflow: ``sngan.training.trackers``) that receives the same scalars, grids and histograms.

Named ``tracking`` rather than ``logging`` so it cannot shadow the standard
library. On resume, ``purge_step`` drops events at or after the resumed step
that the interrupted run wrote after its last checkpoint, so curves continue
without duplicates.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path

import torch
from torch.utils.tensorboard import SummaryWriter

from sngan.data.images import grid, save_png
from sngan.training.trackers import Mirror


class Tracker:
    def __init__(self, run_dir: Path, purge_step: int | None = None, mirror: Mirror | None = None) -> None:
        self.run_dir = Path(run_dir)
        self.writer = SummaryWriter(str(self.run_dir / "tb"), purge_step=purge_step)
        self.metrics_path = self.run_dir / "metrics.jsonl"
        self.mirror = mirror
        if purge_step is not None:
            purge_rows(self.metrics_path, purge_step)

    def scalars(self, values: Mapping[str, float], step: int) -> None:
        for name, value in values.items():
            self.writer.add_scalar(name, float(value), step)
        if self.mirror is not None:
            self.mirror.scalars(values, step)

    def histogram(self, name: str, values: torch.Tensor, step: int) -> None:
        self.writer.add_histogram(name, values, step)
        if self.mirror is not None:
            self.mirror.histogram(name, values.numpy(), step)

    def metrics(self, values: Mapping[str, float], step: int) -> None:
        """Scalars to TensorBoard and one JSON line to ``metrics.jsonl``."""
        self.scalars(values, step)
        with open(self.metrics_path, "a") as f:
            f.write(json.dumps({"step": step, **{k: float(v) for k, v in values.items()}}) + "\n")

    def images(
        self, name: str, images: torch.Tensor, step: int, png: Path | None = None, nrow: int | None = None
    ) -> None:
        """A grid of images in [-1, 1] (``nrow`` per row; default: square) to TensorBoard and, optionally,
        a PNG."""
        images = images.detach().float().cpu().add(1).div(2).clamp(0, 1)
        nrow = nrow or max(1, int(len(images) ** 0.5))
        tiled = grid(images, nrow=nrow)
        self.writer.add_image(name, tiled, step)
        if self.mirror is not None:
            self.mirror.image(name, tiled.mul(255).round().to(torch.uint8).permute(1, 2, 0).numpy(), step)
        if png is not None:
            png.parent.mkdir(parents=True, exist_ok=True)
            save_png(images, png, nrow=nrow)

    def text(self, name: str, text: str, step: int = 0) -> None:
        self.writer.add_text(name, text, step)

    def flush(self) -> None:
        self.writer.flush()

    def close(self, ok: bool = True) -> None:
        """Close TensorBoard's writer and the tracker beside it (``ok``: the run ended without an error)."""
        self.writer.close()
        if self.mirror is not None:
            self.mirror.close(ok)


def purge_rows(path: Path, step: int) -> None:
    """Rows of ``metrics.jsonl`` at or after ``step`` (the interrupted or abandoned run's, about to be
    measured again) move to ``metrics_purged.jsonl`` beside it, so that the file holds one line of
    history, as TensorBoard's purge does for the curves."""
    if not path.is_file():
        return
    keep, drop = [], []
    for line in path.read_text().splitlines(keepends=True):
        try:
            late = json.loads(line)["step"] >= step
        except (ValueError, KeyError, TypeError):
            late = True  # a line cut by a crash: set aside with them
        (drop if late else keep).append(line)
    if drop:
        with open(path.with_name("metrics_purged.jsonl"), "a") as f:
            f.writelines(drop)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text("".join(keep))
        os.replace(tmp, path)


class NullTracker(Tracker):
    """What torchrun's other ranks log to: nothing (rank 0 writes the run's files)."""

    def __init__(self, run_dir: Path, purge_step: int | None = None, mirror: Mirror | None = None) -> None:
        self.run_dir = Path(run_dir)
        self.metrics_path = self.run_dir / "metrics.jsonl"
        self.mirror = None

    def scalars(self, values: Mapping[str, float], step: int) -> None:
        pass

    def metrics(self, values: Mapping[str, float], step: int) -> None:
        pass

    def images(
        self, name: str, images: torch.Tensor, step: int, png: Path | None = None, nrow: int | None = None
    ) -> None:
        pass

    def histogram(self, name: str, values: torch.Tensor, step: int) -> None:
        pass

    def text(self, name: str, text: str, step: int = 0) -> None:
        pass

    def flush(self) -> None:
        pass

    def close(self, ok: bool = True) -> None:
        pass
