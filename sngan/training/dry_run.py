"""``train.dry_run=true``: what a run would do, from everything built (data, networks, speed settings,
resume), without training or saving: the first thing to run on a new cluster or card."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import torch

from sngan.config import TrainConfig, to_yaml
from sngan.data import ImageData
from sngan.metrics.scoring import describe_reference
from sngan.training.resume import later_checkpoints
from sngan.training.speed import Speed
from sngan.training.state import Run, state_dict


def count(net: torch.nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


def times(every: int, start: int, total: int) -> int:
    """How many of steps start+1..total are due every ``every`` steps (the last step always is)."""
    due = total // every - start // every
    return due + (total % every != 0 and total > start)


def checkpoint_bytes(run: Run, config: dict[str, Any], info: dict[str, Any]) -> int:
    """A checkpoint's size now, plus Adam's two moments per parameter where the optimizers have no state
    yet (they make it at their first step)."""
    buffer = io.BytesIO()
    torch.save(state_dict(run, config, info), buffer)
    size = buffer.getbuffer().nbytes
    for opt in (run.opt_g, run.opt_d):
        if not opt.state:
            size += sum(2 * p.numel() * p.element_size() for group in opt.param_groups for p in group["params"])
    return size


def report(
    cfg: TrainConfig,
    run: Run,
    data: ImageData,
    device: torch.device,
    speed: dict[str, Any],
    reference: str,
    source: Path | None,
    size: int,
    later: list[Path] | None = None,
) -> list[str]:
    """The lines the dry run prints; ``later``: the checkpoints a resume from an earlier step would set aside."""
    m, t, o, d = cfg.model, cfg.train, cfg.optim, cfg.dataset
    start, mb = run.step, size / 2**20
    ema = f"; an EMA of G (decay {t.ema_decay})" if run.ema is not None else ""
    placed = run.sampler.images.device
    checkpoints = times(t.checkpoint_every, start, t.steps)
    kept = min(checkpoints, t.keep_checkpoints)
    return [
        "dry run (train.dry_run=true): everything is built; nothing is trained or saved.",
        f"model     {m.name} (width {m.width}, z_dim {m.z_dim}, spectral norm {'on' if m.spectral_norm else 'off'}, "
        f"{'class-conditional' if m.conditional else 'unconditional'}): G {count(run.generator):,} parameters, "
        f"D {count(run.discriminator):,}{ema}",
        f"training  loss {cfg.loss.name}; Adam lr_g {o.lr_g:g}, lr_d {o.lr_d:g}, betas ({o.beta1}, {o.beta2}), "
        f"decay {o.decay}; n_dis {t.n_dis}; batches D {t.batch_size_d}, G {t.batch_size_g}; seed {cfg.seed}",
        f"data      {d.name}, {len(data.images):,} images at {d.resolution}x{d.resolution} "
        f"({data.images.nbytes / 2**20:.1f} MiB as uint8) held on {placed}"
        + (f"; {len(run.classes)} classes" if run.classes else ""),
        f"device    {device}; " + ", ".join(f"{k} {v}" for k, v in speed.items()),
        f"resume    {f'from {source} at step {start}' if source is not None else 'none: a fresh run from step 0'}"
        + (
            f"; would set aside {', '.join(p.name for p in later)} (a rewind: they move to checkpoints/"
            f"abandoned_after_{start}_*/)"
            if later
            else ""
        ),
        f"schedule  steps {start:,} -> {t.steps:,} ({t.steps - start:,} to go); logs every {t.log_every} "
        f"({times(t.log_every, start, t.steps):,}), sample grids every {t.sample_every} "
        f"({times(t.sample_every, start, t.steps):,}), evaluations every {t.eval_every} "
        f"({times(t.eval_every, start, t.steps):,}), checkpoints every {t.checkpoint_every} ({checkpoints:,})"
        + (f", every {t.checkpoint_minutes} min" if t.checkpoint_minutes else "")
        + (f"; stops at {t.max_minutes} min" if t.max_minutes else ""),
        f"metrics   {reference}",
        f"disk      about {mb:.1f} MiB a checkpoint; the newest {t.keep_checkpoints} kept: up to "
        f"{kept * mb:.1f} MiB" + (" (+ best.pt)" if cfg.metrics.name != "none" else ""),
    ]


def print_plan(
    cfg: TrainConfig,
    config: dict[str, Any],
    run: Run,
    data: ImageData,
    device: torch.device,
    speed: Speed,
    info: dict[str, Any],
    source: Path | None,
    run_dir: Path,
) -> None:
    """The dry run's report: everything built, nothing written (a rewind's later checkpoints stay put)."""
    size = checkpoint_bytes(run, config, info)
    reference = describe_reference(cfg.metrics, cfg.inception, cfg.dataset)
    later = later_checkpoints(run_dir, run.step) if source is not None else []
    lines = report(cfg, run, data, device, speed.as_dict(), reference, source, size, later)
    print(f"{lines[0]}\n\nresolved settings:\n{to_yaml(config)}\n" + "\n".join(lines[1:]), flush=True)
