"""The training loop and what it decides each step: when to log, monitor, sample, evaluate, save and stop.

Under torchrun every rank runs this loop in lockstep. Decisions that depend on more than the step
number (a signal, the wall clock) are agreed on once per step, so all ranks save and stop together;
files are written by rank 0 only (the other ranks get a tracker that writes nothing).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import nullcontext
from functools import partial
from pathlib import Path

import torch

from sngan.config import TrainConfig
from sngan.data import ImageData
from sngan.inference import EVAL_SEED_OFFSET, SeededSampler, generate
from sngan.metrics import class_agreement, evaluate_synthetic
from sngan.metrics.scoring import Scorer
from sngan.models.constraints import CONSTRAINTS
from sngan.training.guard import StepGuard
from sngan.training.losses import LOSSES
from sngan.training.monitoring import Monitor
from sngan.training.optim import set_rate
from sngan.training.progress import Progress
from sngan.training.spectral import grad_norm
from sngan.training.speed import GraphCheck, Speed
from sngan.training.state import Run, update_ema
from sngan.training.step import EAGER, DRules, d_step, g_step
from sngan.training.stopping import GracefulStop, Interrupted, TimeLimit, WallClock
from sngan.training.tracking import Tracker
from sngan.training.wrappers import CompileTrial, probe_compiled
from sngan.utils import distributed
from sngan.utils.memory import EvaluationOutOfMemory, noted, out_of_memory, what_to_lower


def lr_factor(step: int, total: int, decay: str) -> float:
    """Learning-rate multiplier for the update that follows ``step`` updates."""
    return max(0.0, 1.0 - step / total) if decay == "linear" else 1.0


def score(
    run: Run, data: ImageData, tracker: Tracker, scorer: Scorer | None, seed: int, eval_samples: int
) -> dict[str, float]:
    """Synthetic quality (``eval_samples`` images) and FID/IS/KID of G (and of its EMA), drawn from
    ``seed`` + EVAL_SEED_OFFSET: same weights, same numbers."""
    device, seed = run.fixed_z.device, seed + EVAL_SEED_OFFSET
    result: dict[str, float] = {}
    nets = {"": run.generator} | ({"ema/": run.ema} if run.ema is not None else {})
    main = distributed.current().is_main
    # Conditional: classes as often as in the training set (the real side's mix), whatever train.fake_labels.
    sampler = lambda net: SeededSampler(net, device, seed, class_counts=run.class_counts)  # noqa: E731
    distributed.sync_buffers(run.generator, run.ema)  # every rank samples with rank 0's BatchNorm statistics
    failures: list[str] = []  # out of memory in the synthetic check (rank 0): said to every rank at the end
    for prefix, net in nets.items():
        if data.prototypes is not None and main and not failures:  # cheap: rank 0 alone
            with noted(failures, device):
                found = evaluate_synthetic(sampler(net), data.prototypes, n=eval_samples)
                if run.classes:  # classes are the prototypes: does G obey its label?
                    per_class = max(1, eval_samples // len(run.classes))
                    found |= class_agreement(class_streams(net, device, seed), data.prototypes, per_class)
                result |= {f"{prefix}synthetic/{k}": v for k, v in found.items()}
        if scorer is not None:  # its own sampler from the same seed: python -m sngan.evaluate reproduces it
            result |= {f"{prefix}{scorer.rule.name}/{k}": v for k, v in scorer(sampler(net)).items()}
    result, failed = distributed.broadcast((result, failures))  # every rank takes the same best.pt decision
    if failed:
        raise EvaluationOutOfMemory(failed[0])
    if result:
        tracker.metrics(result, run.step)
    return result


def new_best(run: Run, result: dict[str, float], rule: str) -> bool:
    """Whether ``result`` holds the lowest FID of rule ``rule`` yet (the EMA's where there is one); if so,
    ``run`` records it (a run scored under another rule before starts over)."""
    key = f"{'ema/' if run.ema is not None else ''}{rule}/fid"
    if key in result and (run.best_metric != key or run.best_fid is None or result[key] < run.best_fid):
        run.best_fid, run.best_step, run.best_metric = result[key], run.step, key
        return True
    return False


def skipped_evaluation(step: int, why: str, batch_size: int) -> str:
    return (
        f"warning: the evaluation at step {step} ran out of memory ({why}) and is skipped; training goes on "
        f"and the next evaluation runs as scheduled. To fit it, embed fewer images at once "
        f"(inception.batch_size={batch_size}, e.g. {max(1, batch_size // 2)}), keep the training images in host "
        f"memory (train.data_on=host), or score the saved checkpoints afterwards with python -m sngan.evaluate."
    )


def class_streams(net: torch.nn.Module, device: torch.device, seed: int) -> Callable[[int, int], torch.Tensor]:
    """``draw(k, n)``: the next n images of class k, from one seeded stream per class (seed + k), so that
    drawing a class in batches gives the images one draw would."""
    streams: dict[int, SeededSampler] = {}

    def draw(k: int, n: int) -> torch.Tensor:
        if k not in streams:
            streams[k] = SeededSampler(net, device, seed + k, label=k)
        return streams[k](n)

    return draw


def set_lr(run: Run, cfg: TrainConfig) -> float:
    factor = lr_factor(run.step, cfg.train.steps, cfg.optim.decay)
    set_rate(run.opt_g, cfg.optim.lr_g * factor)
    set_rate(run.opt_d, cfg.optim.lr_d * factor)
    return factor


def d_rules(cfg: TrainConfig) -> DRules:
    """The constraint's penalty, clipping and BatchNorm handling as the D update takes them (validation
    leaves the constants a constraint does not use null)."""
    c = cfg.constraint
    batch_stats = CONSTRAINTS.get(c.name).norm == "batch"
    return DRules(c.gp_weight or 0.0, c.ortho_weight or 0.0, c.clip, batch_stats)


class NonFiniteError(RuntimeError):
    """An update met a non-finite loss, gradient or weight under on_nonfinite=stop."""


def handle_nonfinite(
    policy: str, run: Run, network: str, stats: dict[str, torch.Tensor], guard: StepGuard | None
) -> str | None:
    """Count a skipped update (``on_nonfinite=skip``: None), or put back the state after the last completed
    step and say what failed (``on_nonfinite=stop``: the loop saves that state and stops).

    ``guard`` (kept before the step) undoes the failed step's other, finite updates,
    so the saved state is exactly the one after the last completed step and resumes like any checkpoint (one
    written at the end of that step is the same state and is kept)."""
    if policy == "skip":
        run.skipped[network] += 1
        return None
    values = ", ".join(f"{k}={float(v):.4g}" for k, v in stats.items() if not k.startswith("finite"))
    if guard is not None:  # always, under on_nonfinite=stop
        guard.put_back()
    return f"the {network} update of step {run.step + 1} ({values})"


def nonfinite_error(failed: str, step: int, saved: Path) -> NonFiniteError:
    return NonFiniteError(
        f"Non-finite loss, gradient or weight in {failed}; the update was not applied. The state after step "
        f"{step}, the last completed one, is saved as {saved}. Resume it with a lower learning rate (resume=auto "
        f"optim.lr_g=... optim.lr_d=... resume_force=true), check the data, or set train.on_nonfinite=skip to "
        f"skip such updates and count them."
    )


def due(step: int, every: int, last: int) -> bool:
    return step % every == 0 or step == last


def train_step(
    cfg: TrainConfig, run: Run, speed: Speed = EAGER, grad_norms: bool = False, guard: StepGuard | None = None
) -> tuple[dict[str, torch.Tensor], float, str | None]:
    """One generator iteration: n_dis D updates, one G update, the non-finite check, the EMA. Returns the
    statistics of the last D update and of the G update (tensors, not yet read), with ``grad_norms`` the
    gradient norms each network's last update left ("grad_norm/d", "grad_norm/g", each measured before
    the next update runs), the learning-rate factor the updates used, and what failed under
    ``on_nonfinite=stop`` (None if nothing did; else the run is back at the state before this step, which
    ``guard`` keeps: the loop's, whose buffers last the run; a fresh one where none is given)."""
    loss, t = LOSSES.get(cfg.loss.name), cfg.train
    device, here = run.fixed_z.device, distributed.current()
    num_classes = len(run.classes) if run.classes else 0  # 0: unconditional
    # Under torchrun the *_update wrappers all-reduce gradients; the *_read ones do not.
    g_update, g_read, d_update, d_read = run.callables()
    factor, rules = set_lr(run, cfg), d_rules(cfg)
    # on_nonfinite=stop puts back the state before this step if it fails: what a failed step can change,
    # copied beside the networks (sngan/training/guard.py). G's update lands only if every D update did.
    stop = t.on_nonfinite == "stop"
    guard = (guard or StepGuard(run)) if stop else None
    if guard is not None:
        guard.keep()
    # Update D n_dis times, each on a fresh real batch and fresh fakes (this rank's share of each).
    updates = []
    for _ in range(t.n_dis):
        real, real_y = run.sampler.next(t.batch_size_d, device)
        stats = d_step(
            g_read,
            d_update,
            run.opt_d,
            loss,
            real,
            cfg.model.z_dim,
            real_y,
            num_classes,
            speed,
            run.fake_cdf,
            run.augment,
            rules,
        )
        updates.append(("discriminator", stats))
    gate = torch.stack([s["finite/d"].reshape(()) for _, s in updates]).all() if stop else None
    if grad_norms:  # now: under compile=max the G update's graphs may reuse the memory of D's gradients
        stats = stats | grad_norm("d", run.discriminator)  # a copy: ``updates`` keeps the update's own
    # Update G once; D is read without the all-reduce wrapper, so its gradients are not all-reduced.
    batch_g = t.batch_size_g // here.world
    g_stats = g_step(
        g_update,
        d_read,
        run.opt_g,
        loss,
        batch_g,
        cfg.model.z_dim,
        device,
        num_classes,
        speed,
        run.fake_cdf,
        run.augment,
        rules.batch_stats,
        gate,
    )
    updates.append(("generator", g_stats))
    if grad_norms:
        g_stats = g_stats | grad_norm("g", run.generator)
    # Skipped updates (non-finite): the flags are read once per step, the only wait for the device.
    finite = torch.cat([s[f"finite/{network[0]}"] for network, s in updates]).tolist()
    for ok, (network, update_stats) in zip(finite, updates, strict=True):
        failed = None if ok else handle_nonfinite(t.on_nonfinite, run, network, update_stats, guard)
        if failed is not None:
            return stats | g_stats, factor, failed
    if run.ema is not None and t.ema_decay is not None:
        update_ema(run.ema, run.generator, t.ema_decay)
    run.step += 1
    return stats | g_stats, factor, None


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


def train_loop(
    cfg: TrainConfig,
    run: Run,
    data: ImageData,
    tracker: Tracker,
    save: Callable[..., Path],
    stop: GracefulStop,
    scorer: Scorer | None = None,
    monitor: Monitor | None = None,
    speed: Speed = EAGER,
    fell_back: Callable[[Speed, str], None] | None = None,
) -> dict[str, float]:
    t, here = cfg.train, distributed.current()
    progress = Progress(t.steps, run.step, shown=here.is_main)  # a bar on a terminal, else plain lines
    result: dict[str, float] = {}
    pace = Pace(run.step)
    wall = WallClock(t.max_minutes, t.checkpoint_minutes)
    graphs = GraphCheck(speed)
    trial = CompileTrial(run, speed, t.compile, save, fell_back)  # a failing compile: eager (auto) or an error
    trial.preflight(partial(probe_compiled, run, cfg, speed, d_rules(cfg).batch_stats))  # torchrun: agreed first
    first, fix = run.step, what_to_lower(t.batch_size_d, t.batch_size_g, cfg.model.width)
    device = run.fixed_z.device
    kept = StepGuard(run) if t.on_nonfinite == "stop" else None  # its buffers last the run
    try:
        while run.step < t.steps:
            # Update D n_dis times and G once; skip or stop on a non-finite update; average G. Running out of
            # memory in the first step means settings too big for this machine: an error that names them.
            every = t.monitor_every
            monitor_due = monitor is not None and every is not None and due(run.step + 1, every, t.steps)
            memory = (
                out_of_memory("running the first training step", fix, device) if run.step == first else nullcontext()
            )
            with memory:
                stats, factor, failed = trial.step(partial(train_step, cfg, run, grad_norms=monitor_due, guard=kept))
            if failed is not None:  # on_nonfinite=stop: save the state after the last completed step, stop
                raise nonfinite_error(failed, run.step, save(run, "keep"))
            graphs.after_step()  # compile=max: a note if more updates ran without CUDA graphs
            # Agree on saving and stopping (a signal or the wall clock on any rank): every rank decides alike,
            # and a stop skips sampling and evaluation so the checkpoint is written within the scheduler's grace.
            signum, save_due, out_of_time = distributed.max_over_ranks(
                [stop.requested or 0, int(wall.save_due()), int(wall.out_of_time())]
            )
            stopping = bool(signum) or (bool(out_of_time) and run.step < t.steps)
            # Log (losses and D outputs averaged over ranks: the global batch's values).
            log_due = due(run.step, t.log_every, t.steps)
            if log_due:
                rates = {"lr/g": cfg.optim.lr_g * factor, "lr/d": cfg.optim.lr_d * factor}
                log_step(tracker, progress, run, stats, pace, rates)
            progress.update(run.step, log_due)
            # Monitor spectral norms, gradient norms and D's outputs (reads only: training is unchanged).
            if monitor is not None and monitor_due:
                grads = {k: v for k, v in stats.items() if k.startswith("grad_norm")}
                monitor.log(run.generator, run.discriminator, run.fixed_z, tracker, run.step, run.fixed_y, grads)
            # Sample a grid from the fixed z.
            if here.is_main and not stopping and due(run.step, t.sample_every, t.steps):
                sample_grids(tracker, run)
            # Evaluate (one that runs out of memory is skipped with a warning: a long run trains on).
            if not stopping and due(run.step, t.eval_every, t.steps):
                try:
                    found = score(run, data, tracker, scorer, cfg.seed, t.eval_samples)
                except EvaluationOutOfMemory as exc:
                    found = {}
                    progress.write(skipped_evaluation(run.step, str(exc), cfg.inception.batch_size))
                progress.scored(found, run.step)
                result = found or result
                if scorer is not None and new_best(run, found, scorer.rule.name):  # keep it as best.pt
                    progress.saved(save(run, "best"), run.step)
            # Save on schedule, every checkpoint_minutes, on a signal (on any rank) or at max_minutes; then stop
            # if asked.
            if due(run.step, t.checkpoint_every, t.steps) or signum or save_due:
                progress.saved(save(run), run.step)
                wall.saved()
            if signum:
                raise Interrupted(signum, run.step)
            if stopping:
                raise TimeLimit(t.max_minutes or 0.0, run.step)
    finally:
        progress.close()
    return result
