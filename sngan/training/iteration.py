"""One generator iteration: the body of the paper's Algorithm 1 (Miyato et al. 2018), with our guarantees.

    for t = 1 .. n_dis:  x ~ P_data, z ~ p(z); update D (one power iteration of spectral normalization)
    z ~ p(z); update G (D read as it is: no power iteration)

Around it: the learning rate of this step (a function of the step), the non-finite decision (read once a
step, the step's one wait for the device), and the EMA of G. The updates themselves are in step.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import torch

from sngan.training.guard import StepGuard
from sngan.training.losses import Loss
from sngan.training.optim import set_rate
from sngan.training.spectral import grad_norm
from sngan.training.speed import Speed
from sngan.training.state import Run, update_ema
from sngan.training.step import EAGER, PLAIN, DRules, Recipe, d_step, g_step
from sngan.utils import distributed


@dataclass(frozen=True)
class Iteration:
    """The settings of every generator iteration (plain values, read from the config once)."""

    loss: Loss
    z_dim: int
    n_dis: int  # D updates per G update
    batch_size_d: int  # real (and fake) images of each D update, all ranks together
    batch_size_g: int  # fakes of the G update, all ranks together
    lr_g: float
    lr_d: float
    steps: int  # the run's length: the linear decay reaches 0 there
    decay: str = "none"  # linear | none
    rules: DRules = PLAIN  # the constraint's penalty, clipping and BatchNorm handling
    on_nonfinite: str = "stop"  # stop: put the state back and say what failed | skip: count the update
    ema_decay: float | None = None


class Outcome(NamedTuple):
    stats: dict[str, torch.Tensor]  # the last D update's and the G update's statistics (tensors, not read)
    factor: float  # the learning-rate multiplier the updates used
    failed: str | None  # on_nonfinite=stop: what failed (the run is back at the state before the step)


def lr_factor(step: int, total: int, decay: str) -> float:
    """Learning-rate multiplier for the update that follows ``step`` updates."""
    return max(0.0, 1.0 - step / total) if decay == "linear" else 1.0


def generator_iteration(
    run: Run, it: Iteration, speed: Speed = EAGER, grad_norms: bool = False, guard: StepGuard | None = None
) -> Outcome:
    """n_dis D updates, one G update, the non-finite decision, the EMA. ``grad_norms``: add the gradient norm
    each network's last update left ("grad_norm/d", "grad_norm/g"). Under on_nonfinite=stop, ``guard`` keeps
    the state before the step (the loop's, whose buffers last the run; a fresh one where none is given), and
    G's update lands only if every D update did."""
    device, here = run.fixed_z.device, distributed.current()
    factor, how = set_rates(run, it), recipe(run, it, speed)
    g_update, g_read, d_update, d_read = run.callables()  # under torchrun: *_update all-reduce gradients
    guard = (guard or StepGuard(run)) if it.on_nonfinite == "stop" else None
    if guard is not None:
        guard.keep()
    # for t = 1 .. n_dis: a fresh real batch and fresh fakes (this rank's share of each); update D.
    d_stats = []
    for _ in range(it.n_dis):
        real, real_y = run.sampler.next(it.batch_size_d, device)
        d_stats.append(d_step(g_read, d_update, run.opt_d, real, real_y, how))
    stats = d_stats[-1]
    if grad_norms:  # now: under compile=max the G update's graphs may reuse the memory of D's gradients
        stats = stats | grad_norm("d", run.discriminator)
    # Fresh fakes; update G, D read without the all-reduce wrapper (its gradients stay this rank's).
    gate = torch.stack([s["finite/d"].reshape(()) for s in d_stats]).all() if guard is not None else None
    g_stats = g_step(g_update, d_read, run.opt_g, it.batch_size_g // here.world, device, how, gate)
    stats = stats | g_stats | (grad_norm("g", run.generator) if grad_norms else {})
    # A non-finite update was not applied: count it (skip), or put the state back and say so (stop).
    failed = settle(run, it.on_nonfinite, [("discriminator", s) for s in d_stats] + [("generator", g_stats)], guard)
    if failed is not None:
        return Outcome(stats, factor, failed)
    # Average G.
    if run.ema is not None and it.ema_decay is not None:
        update_ema(run.ema, run.generator, it.ema_decay)
    run.step += 1
    return Outcome(stats, factor, None)


def set_rates(run: Run, it: Iteration) -> float:
    """Set this step's learning rates (a function of the step); returns the factor of the base rates."""
    factor = lr_factor(run.step, it.steps, it.decay)
    set_rate(run.opt_g, it.lr_g * factor)
    set_rate(run.opt_d, it.lr_d * factor)
    return factor


def recipe(run: Run, it: Iteration, speed: Speed) -> Recipe:
    """What this step's updates need: the settings, and the run's class mix and augmentation as they are now."""
    classes = len(run.classes) if run.classes else 0
    return Recipe(it.loss, it.z_dim, classes, run.fake_cdf, run.augment, it.rules, speed)


def settle(
    run: Run, policy: str, updates: list[tuple[str, dict[str, torch.Tensor]]], guard: StepGuard | None
) -> str | None:
    """Read the updates' finite flags (one wait for the device) and act on the first that failed: None
    where all passed or ``policy`` is skip (each skipped update counted), else what failed."""
    finite = torch.cat([stats[f"finite/{network[0]}"] for network, stats in updates]).tolist()
    for ok, (network, stats) in zip(finite, updates, strict=True):
        failed = None if ok else handle_nonfinite(policy, run, network, stats, guard)
        if failed is not None:
            return failed
    return None


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
