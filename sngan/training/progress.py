"""What a training run shows while it trains. On a terminal: tqdm's bar with the losses. Anywhere else (a
pipe or a file: sbatch, nohup, ``docker logs``, CI), where tqdm turns itself off, one plain line at a steady
pace: every ``log_every`` steps but at most every ``MIN_S`` seconds, and at least every ``MAX_S`` seconds.
Rank 0 only under torchrun. The grammar of a progress line (docs/progress.md):

    step <n>/<total> <pct>% | <rate> it/s | eta <time> | loss/d=<x> loss/g=<x>[ augment/p=<x>[ augment/rt=<x>]]
        [| <metric>=<x> @<step>]

Events (an evaluation, a checkpoint) print one line of their own: ``eval step <n>: <name>=<x> ...`` and
``checkpoint step <n>: <path>``.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO

from tqdm import tqdm

MIN_S, MAX_S = 5.0, 30.0


def duration(seconds: float) -> str:
    minutes = int(seconds // 60)
    return f"{minutes // 60}h{minutes % 60:02d}m" if minutes >= 60 else f"{minutes}m{int(seconds % 60):02d}s"


def headline(result: dict[str, float]) -> str | None:
    """The number a progress line carries from an evaluation: the EMA's FID (or Frechet distance on another
    network: fd_dinov2) where there is one, else G's, else the synthetic quality (EMA first)."""
    distance = lambda k: k.endswith("/fid") or k.rsplit("/", 1)[-1].startswith("fd_")  # noqa: E731
    for chosen in (distance, lambda k: k.endswith("synthetic/quality")):
        keys = sorted((k for k in result if chosen(k)), key=lambda k: not k.startswith("ema/"))
        if keys:
            return f"{keys[0]}={result[keys[0]]:.4g}"
    return None


class Progress:
    def __init__(
        self,
        total: int,
        start: int,
        shown: bool,
        stream: IO[str] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.stream = stream or sys.stderr
        self.total, self.step, self.shown, self.clock = total, start, shown, clock
        self.plain = shown and not self.stream.isatty()
        self.bar = None
        if shown and not self.plain:
            self.bar = tqdm(total=total, initial=start, dynamic_ncols=True, desc="train", file=self.stream)
        self.since_step, self.since = start, clock()
        self.losses: dict[str, float] = {}
        self.metric: str | None = None

    def update(self, step: int, log_due: bool) -> None:
        """Step ``step`` is done; ``log_due``: a logging step (``train.log_every``)."""
        if self.bar is not None:
            self.bar.update(step - self.step)
        self.step = step
        waited = self.clock() - self.since
        if self.shown and ((log_due and waited >= MIN_S) or waited >= MAX_S or step == self.total):
            self.line()

    def line(self) -> None:
        now = self.clock()
        rate = (self.step - self.since_step) / max(now - self.since, 1e-9)
        eta = (self.total - self.step) / rate if rate > 0 else 0.0
        parts = [
            f"step {self.step}/{self.total} {100 * self.step // max(self.total, 1)}%",
            f"{rate:.3g} it/s",
            f"eta {duration(eta)}",
        ]
        if self.losses:
            parts.append(" ".join(f"{k}={v:.4g}" for k, v in self.losses.items()))
        if self.metric:
            parts.append(self.metric)
        text = " | ".join(parts)
        if self.plain:
            self.write(text)
        elif hasattr(self.stream, "to_file"):  # a terminal: the bar there, the line in train.log
            self.stream.to_file(text + "\n")
        self.since_step, self.since = self.step, now

    def losses_are(self, scalars: dict[str, float]) -> None:
        shown = ("loss/d", "loss/g", "augment/p", "augment/rt")  # augment: p (ada: and r_t) after the losses
        self.losses = {k: scalars[k] for k in shown if k in scalars}
        if self.bar is not None:
            self.bar.set_postfix({k: f"{v:.3f}" for k, v in self.losses.items()})

    def scored(self, result: dict[str, float], step: int) -> None:
        shown = headline(result)
        if shown is not None:
            self.metric = f"{shown} @{step}"
            self.write(f"eval step {step}: " + " ".join(f"{k}={v:.4g}" for k, v in result.items()))

    def saved(self, path: Path, step: int) -> None:
        self.write(f"checkpoint step {step}: {path}")

    def write(self, text: str) -> None:
        if not self.shown:
            return
        if self.bar is not None:
            self.bar.write(text, file=self.stream)
        else:
            print(text, file=self.stream, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
