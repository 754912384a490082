"""The mutable state of a training run, and its checkpoint form.

``Run`` holds everything that changes while training; ``state_dict`` turns it
into a plain dict that ``torch.load(weights_only=True)`` reads back, and
``restore`` puts such a dict back into a freshly built ``Run``.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from sngan import checkpoint as ckpt
from sngan.data import BatchSampler


@dataclass
class Run:
    """Everything that changes while training; saved whole in checkpoints."""

    generator: torch.nn.Module
    discriminator: torch.nn.Module
    opt_g: torch.optim.Optimizer
    opt_d: torch.optim.Optimizer
    sampler: BatchSampler
    fixed_z: torch.Tensor
    step: int = 0
    skipped: dict[str, int] = field(default_factory=lambda: {"discriminator": 0, "generator": 0})
    ema: torch.nn.Module | None = None  # exponential moving average of G, if enabled
    best_fid: float | None = None  # lowest FID so far (of the EMA generator where there is one)
    best_step: int | None = None
    best_metric: str | None = None  # which number best_fid is, rule included: "ema/fid_paper/fid"


def make_ema(generator: torch.nn.Module) -> torch.nn.Module:
    ema = copy.deepcopy(generator).eval()
    ema.requires_grad_(False)
    return ema


@torch.no_grad()
def update_ema(ema: torch.nn.Module, generator: torch.nn.Module, decay: float) -> None:
    """Average parameters; copy buffers (BatchNorm running statistics) as they are."""
    for avg, p in zip(ema.parameters(), generator.parameters(), strict=True):
        avg.lerp_(p, 1.0 - decay)
    for avg_b, b in zip(ema.buffers(), generator.buffers(), strict=True):
        avg_b.copy_(b)


def state_dict(run: Run, config: dict[str, Any], info: dict[str, Any]) -> dict[str, Any]:
    return {
        "format_version": ckpt.FORMAT_VERSION,
        "step": run.step,
        "generator": run.generator.state_dict(),
        "discriminator": run.discriminator.state_dict(),
        "opt_g": run.opt_g.state_dict(),
        "opt_d": run.opt_d.state_dict(),
        "sampler": run.sampler.state_dict(),
        "fixed_z": run.fixed_z.cpu(),
        "skipped": dict(run.skipped),
        "ema": run.ema.state_dict() if run.ema is not None else None,
        "best": {"metric": run.best_metric, "fid": run.best_fid, "step": run.best_step},
        "rng": ckpt.rng_state(),
        "config": config,
        "provenance": info,
    }


def restore(run: Run, state: dict[str, Any], path: Path) -> None:
    try:
        run.generator.load_state_dict(state["generator"])
        run.discriminator.load_state_dict(state["discriminator"])
        run.opt_g.load_state_dict(state["opt_g"])
        run.opt_d.load_state_dict(state["opt_d"])
        run.sampler.load_state_dict(state["sampler"])
        if run.ema is not None:
            # A run that turns EMA on mid-way starts the average from G.
            run.ema.load_state_dict(state["ema"] if state.get("ema") is not None else state["generator"])
    except (KeyError, RuntimeError, ValueError) as exc:
        reason = str(exc).strip().splitlines()[0]
        raise ckpt.CheckpointError(
            f"Checkpoint '{path}' does not fit this configuration ({reason}). Resume with the model, "
            f"width and dataset the run was started with (its config is stored in the checkpoint)."
        ) from exc
    run.fixed_z = state["fixed_z"].to(run.fixed_z.device)
    run.step = int(state["step"])
    run.skipped = dict(state["skipped"])
    best = state.get("best") or {}
    run.best_fid, run.best_step, run.best_metric = best.get("fid"), best.get("step"), best.get("metric")
    ckpt.set_rng_state(state["rng"])
