"""The training loop and what it decides each step: when to log, monitor, sample, evaluate, save and stop.

Under torchrun every rank runs this loop in lockstep. Decisions that depend on more than the step
number (a signal, the wall clock) are agreed on once per step, so all ranks save and stop together;
files are written by rank 0 only (the other ranks get a tracker that writes nothing).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import torch

from sngan.data import ImageData
from sngan.inference import generate
from sngan.metrics.scoring import Scorer
from sngan.training.evaluation import new_best, score, skipped_evaluation
from sngan.training.guard import StepGuard
from sngan.training.iteration import Iteration, Outcome, generator_iteration, nonfinite_error
from sngan.training.monitoring import Monitor
from sngan.training.progress import Progress
from sngan.training.speed import GraphCheck, Speed
from sngan.training.state import Run
from sngan.training.stopping import GracefulStop, Interrupted, TimeLimit, WallClock
from sngan.training.tracking import Tracker
from sngan.training.wrappers import CompileTrial, probe_compiled
from sngan.utils import distributed
from sngan.utils.memory import EvaluationOutOfMemory, out_of_memory


@dataclass(frozen=True)
class Schedule:
    """When the loop logs, monitors, samples, evaluates, saves and stops (plain values, from the config once)."""

    steps: int  # generator iterations in all
    log_every: int
    sample_every: int
    eval_every: int
    eval_samples: int  # images of the synthetic quality measure
    checkpoint_every: int
    monitor_every: int | None = None  # spectral norms, gradient norms, D's outputs; None: off
    checkpoint_minutes: float | None = None  # also save every this many minutes of wall time
    max_minutes: float | None = None  # stop cleanly, with a checkpoint, after this many minutes
    compile: str = "none"  # as asked: a failing compile falls back to eager (auto) or stops (a named one)
    seed: int = 0  # the run's: evaluations draw from seed + EVAL_SEED_OFFSET
    lower: str = "lower the batch sizes"  # what to lower when the first step runs out of memory
    inception_batch: int = 50  # images the Inception network embeds at once (the advice of a skipped evaluation)


@dataclass(frozen=True)
class Plan:
    iteration: Iteration
    schedule: Schedule


def due(step: int, every: int, last: int) -> bool:
    return step % every == 0 or step == last


class Pace:
    """Generator iterations a second since the last reading (the logged speed)."""

    def __init__(self, step: int) -> None:
        self.since, self.step = time.perf_counter(), step

    def rate(self, step: int) -> float:
        now = time.perf_counter()
        rate = (step - self.step) / max(now - self.since, 1e-9)
        self.since, self.step = now, step
        return rate


def log_step(
    tracker: Tracker,
    progress: Progress,
    run: Run,
    stats: dict[str, torch.Tensor],
    pace: Pace,
    rates: dict[str, float],
) -> None:
    """Log the losses and D outputs averaged over ranks (the global batch's values), the skipped-update
    counts, the learning ``rates`` and the speed; the progress bar or line shows the losses."""
    logged = {k: v for k, v in stats.items() if not k.startswith(("finite", "grad_norm"))}
    logged |= run.augment.scalars() if run.augment is not None else {}  # p and r_t: read here only
    scalars = {k: float(v) for k, v in distributed.mean_over_ranks(logged).items()}  # waits for the device
    scalars |= {f"nonfinite/skipped_{k[0]}": n for k, n in run.skipped.items()}  # _d, _g
    tracker.scalars(scalars | rates | {"speed/g_iters_per_s": pace.rate(run.step)}, run.step)
    progress.losses_are(scalars)


def sample_grids(tracker: Tracker, run: Run) -> None:
    """Grids of G's (and the EMA's) images from the fixed z, to TensorBoard and samples/."""
    png = tracker.run_dir / "samples" / f"step_{run.step:08d}.png"
    # conditional: one row per class (one image per class, as with CIFAR-100: a square)
    num_classes = len(run.classes) if run.classes else 0
    row = len(run.fixed_z) // num_classes if num_classes and len(run.fixed_z) > num_classes else None
    for tag, net in (("samples/fixed_z", run.generator), ("samples/fixed_z_ema", run.ema)):
        if net is not None:
            tracker.images(tag, generate(net, run.fixed_z, run.fixed_y), run.step, png, nrow=row)
            png = png.with_name(f"ema_step_{run.step:08d}.png")


class Loop:
    """The training loop (``Loop(...).train()``) and what it works with: the run, its plan, where its numbers,
    images and checkpoints go (``save(run)``), the stop signals, and the trial of a compiled step
    (``fell_back`` hears of a compile that fell back to eager); its other methods are the loop's longer
    blocks."""

    def __init__(
        self,
        run: Run,
        plan: Plan,
        data: ImageData,
        tracker: Tracker,
        save: Callable[..., Path],
        stop: GracefulStop,
        scorer: Scorer | None,
        monitor: Monitor | None,
        speed: Speed,
        fell_back: Callable[[Speed, str], None] | None,
    ) -> None:
        s, self.here = plan.schedule, distributed.current()
        self.run, self.plan, self.data, self.tracker, self.save, self.stop = run, plan, data, tracker, save, stop
        self.scorer, self.monitor = scorer, monitor
        self.progress = Progress(s.steps, run.step, shown=self.here.is_main)  # a bar on a terminal, else lines
        self.pace, self.wall, self.graphs = (
            Pace(run.step),
            WallClock(s.max_minutes, s.checkpoint_minutes),
            GraphCheck(speed),
        )
        self.trial = CompileTrial(run, speed, s.compile, save, fell_back)  # failing: eager (auto) or an error
        self.trial.preflight(partial(probe_compiled, run, plan.iteration, speed))  # torchrun: agreed first
        self.first = run.step
        self.kept = StepGuard(run) if plan.iteration.on_nonfinite == "stop" else None  # its buffers last the run

    def iterate(self) -> tuple[Outcome, bool]:
        """One generator iteration (and whether the monitor reads this step). Out of memory in the first step
        means settings too big for this machine: an error that names them. A failed update under
        on_nonfinite=stop: the state after the last completed step is saved, and NonFiniteError raised."""
        run, s = self.run, self.plan.schedule
        every = s.monitor_every
        monitor_due = self.monitor is not None and every is not None and due(run.step + 1, every, s.steps)
        first = run.step == self.first
        memory = (
            out_of_memory("running the first training step", s.lower, run.fixed_z.device) if first else nullcontext()
        )
        with memory:
            outcome = self.trial.step(
                partial(generator_iteration, run, self.plan.iteration, grad_norms=monitor_due, guard=self.kept)
            )
        if outcome.failed is not None:
            raise nonfinite_error(outcome.failed, run.step, self.save(run, keep=True))
        self.graphs.after_step()  # compile=max: a note if more updates ran without CUDA graphs
        return outcome, monitor_due

    def agree(self) -> tuple[int, bool, bool]:
        """(signal, save now, stop now), the same on every rank: a signal or the wall clock on any rank."""
        wall = self.wall
        signum, save_due, out_of_time = distributed.max_over_ranks(
            [self.stop.requested or 0, int(wall.save_due()), int(wall.out_of_time())]
        )
        return (
            signum,
            bool(save_due),
            bool(signum) or (bool(out_of_time) and self.run.step < self.plan.schedule.steps),
        )

    def log(self, outcome: Outcome) -> None:
        """Losses and D outputs averaged over ranks, the learning rates this step used and the speed."""
        it, factor = self.plan.iteration, outcome.factor
        rates = {"lr/g": it.lr_g * factor, "lr/d": it.lr_d * factor}
        log_step(self.tracker, self.progress, self.run, outcome.stats, self.pace, rates)

    def evaluate(self, result: dict[str, float]) -> dict[str, float]:
        """Score G (one evaluation that runs out of memory is skipped with a warning: a long run trains on),
        keep a new best FID as best.pt; returns the numbers (``result`` where the evaluation was skipped)."""
        s, run = self.plan.schedule, self.run
        try:
            found = score(run, self.data, self.tracker, self.scorer, s.seed, s.eval_samples)
        except EvaluationOutOfMemory as exc:
            found = {}
            self.progress.write(skipped_evaluation(run.step, str(exc), s.inception_batch))
        self.progress.scored(found, run.step)
        if self.scorer is not None and new_best(run, found, self.scorer.rule.name, self.scorer.rule.network):
            self.progress.saved(self.save(run, best=True), run.step)
        return found or result

    def train(self) -> dict[str, float]:
        """Train to ``plan.schedule.steps`` generator iterations as the schedule says; returns the last
        evaluation's numbers. ``save(run)`` writes the rolling checkpoint (``keep=True``: unless it exists;
        ``best=True``: best.pt). Raises Interrupted (a signal), TimeLimit (max_minutes) and, under
        on_nonfinite=stop, NonFiniteError, each after saving."""
        run, s, tracker, monitor = self.run, self.plan.schedule, self.tracker, self.monitor
        result: dict[str, float] = {}
        try:
            while run.step < s.steps:
                # Train: n_dis D updates and one G update (iteration.py).
                outcome, monitor_due = self.iterate()
                # Agree on saving and stopping (a signal or the wall clock on any rank): every rank decides
                # alike, and a stop skips sampling and evaluation so the checkpoint is written within the
                # scheduler's grace.
                signum, save_due, stopping = self.agree()
                # Log (losses and D outputs averaged over ranks: the global batch's values).
                if logged := due(run.step, s.log_every, s.steps):
                    self.log(outcome)
                self.progress.update(run.step, logged)
                # Monitor spectral norms, gradient norms and D's outputs (reads only: training is unchanged).
                if monitor is not None and monitor_due:
                    grads = {k: v for k, v in outcome.stats.items() if k.startswith("grad_norm")}
                    monitor.log(run.generator, run.discriminator, run.fixed_z, tracker, run.step, run.fixed_y, grads)
                # Sample a grid from the fixed z.
                if self.here.is_main and not stopping and due(run.step, s.sample_every, s.steps):
                    sample_grids(tracker, run)
                # Evaluate.
                if not stopping and due(run.step, s.eval_every, s.steps):
                    result = self.evaluate(result)
                # Save on schedule, every checkpoint_minutes, on a signal (any rank's) or at max_minutes; stop
                # if asked.
                if due(run.step, s.checkpoint_every, s.steps) or signum or save_due:
                    self.progress.saved(self.save(run), run.step)
                    self.wall.saved()
                if signum:
                    raise Interrupted(signum, run.step)
                if stopping:
                    raise TimeLimit(s.max_minutes or 0.0, run.step)
        finally:
            self.progress.close()
        return result
