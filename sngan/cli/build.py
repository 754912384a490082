"""The train command's parts, built from its checked settings: the run (networks, optimizers, sampler, fixed
grid, EMA, augmentation), the loop's plain settings (``plan_of``), the speed settings, the spectral monitor and
the checkpoint writer. Only this module and start.py read the training config; what they build takes plain
values."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from sngan.cli.settings import class_names
from sngan.config import TrainConfig
from sngan.data import BatchSampler, ImageData, to_float
from sngan.models import CONSTRAINTS, MODELS, build_models
from sngan.training.augment import Augment
from sngan.training.iteration import Iteration
from sngan.training.loop import Plan, Schedule
from sngan.training.losses import LOSSES
from sngan.training.monitoring import Monitor
from sngan.training.optim import adam
from sngan.training.speed import Speed, memory_format, resolve
from sngan.training.state import Run, fingerprint, make_ema, set_class_mix, state_dict
from sngan.training.step import EAGER, DRules
from sngan.utils import checkpoint as ckpt
from sngan.utils import distributed
from sngan.utils.distributed import Dist
from sngan.utils.memory import out_of_memory, what_to_lower


def plan_of(cfg: TrainConfig) -> Plan:
    """The loop's settings: one generator iteration's (Algorithm 1's inputs) and the schedule's."""
    return Plan(iteration_of(cfg), schedule_of(cfg))


def iteration_of(cfg: TrainConfig) -> Iteration:
    t, c = cfg.train, cfg.constraint
    # the constraint's penalty, clipping and BatchNorm handling (validation leaves the unused constants null)
    rule = CONSTRAINTS.get(c.name)
    weight = (getattr(c, rule.weighted_by) or 0.0) if rule.weighted_by else 0.0
    rules = DRules(c.gp_weight or 0.0, rule.penalty, weight, c.clip, rule.norm == "batch")
    return Iteration(
        LOSSES.get(cfg.loss.name), cfg.model.z_dim, t.n_dis, t.batch_size_d, t.batch_size_g, cfg.optim.lr_g,
        cfg.optim.lr_d, t.steps, cfg.optim.decay, rules, t.on_nonfinite, t.ema_decay,
    )  # fmt: skip


def schedule_of(cfg: TrainConfig) -> Schedule:
    t = cfg.train
    return Schedule(
        t.steps, t.log_every, t.sample_every, t.eval_every, t.eval_samples, t.checkpoint_every, t.monitor_every,
        t.checkpoint_minutes, t.max_minutes, t.compile, cfg.seed,
        what_to_lower(t.batch_size_d, t.batch_size_g, cfg.model.width), cfg.inception.batch_size,
    )  # fmt: skip


def build_run(
    cfg: TrainConfig, data: ImageData, device: torch.device, here: Dist | None = None, speed: Speed = EAGER
) -> Run:
    here = here or Dist()
    classes = class_names(cfg, data)
    k = len(classes) if classes else 0
    torch.manual_seed(cfg.seed)  # the same initial weights on every rank
    g, d = build_models(cfg.model.name, cfg.model.z_dim, cfg.model.width, None, k, cfg.constraint.name)
    g, d = (net.to(device, memory_format=memory_format(speed)) for net in (g, d))
    betas = (cfg.optim.beta1, cfg.optim.beta2)
    opt_g = adam(list(g.parameters()), cfg.optim.lr_g, betas, device)
    opt_d = adam(list(d.parameters()), cfg.optim.lr_d, betas, device)
    labels = data.labels if k else None
    sampler = BatchSampler(data.images, cfg.seed, cfg.dataset.hflip, here.rank, here.world, labels)
    if speed.data_on_device:
        fix = what_to_lower(cfg.train.batch_size_d, cfg.train.batch_size_g, cfg.model.width)
        with out_of_memory(f"placing the training images on {device}", fix, device):
            sampler.place(device)
    # The fixed grid: a square of fixed z, or (conditional) one row per class.
    per_class = max(1, cfg.train.grid_size // k) if k else 0
    fixed_y = torch.arange(k).repeat_interleave(per_class).to(device) if k else None
    n = len(fixed_y) if fixed_y is not None else cfg.train.grid_size
    fixed_z = torch.randn(n, cfg.model.z_dim, generator=torch.Generator().manual_seed(cfg.seed))
    ema = make_ema(g) if cfg.train.ema_decay is not None else None
    run = Run(g, d, opt_g, opt_d, sampler, fixed_z.to(device), ema=ema, fixed_y=fixed_y, classes=classes)
    run.data_digest, run.data_count = data.digest(), len(data.images)
    a = cfg.augment
    if a.name != "none":  # what D sees; the generator, its samples and the evaluations never augment
        run.augment = Augment(a.name, device, a.p, a.policy, a.adaptive, a.target, a.interval, a.speed_kimg)
    if labels is not None:  # fakes' classes: as often as the training set's (balanced sets: uniform)
        set_class_mix(run, data.class_counts(), cfg.train.fake_labels == "data")
    return run


def make_monitor(run: Run, data: ImageData, model: str, grid_size: int, device: torch.device) -> Monitor:
    """The spectral monitor, reading D's outputs on the first ``grid_size`` training images."""
    fixed_real = to_float(data.images[:grid_size]).to(device)
    fixed_real_y = data.labels[:grid_size].to(device) if run.classes else None
    return Monitor.create(run.discriminator, MODELS.get(model).lipschitz_chain, fixed_real, fixed_real_y)


def resolve_speed(cfg: TrainConfig, device: torch.device, data_bytes: int, ddp: bool) -> tuple[Speed, list[str]]:
    t = cfg.train
    return resolve(device, t.precision, t.tf32, t.compile, t.channels_last, t.data_on, data_bytes, ddp, t.sync_bn)


def make_saver(run_dir: Path, config: dict[str, Any], info: dict[str, Any], keep_last: int) -> Callable[..., Path]:
    def save(r: Run, keep: bool = False, best: bool = False) -> Path:
        """The rolling checkpoint of this step; ``keep``: the same unless that file exists (then kept as it
        is); ``best``: checkpoints/best.pt, never pruned. Every rank calls it at the same step (it gathers their
        RNG states); rank 0 writes."""
        # BatchNorm statistics (G's; D's under constraint=bn), which each rank updates from its own batches: rank 0's
        distributed.sync_buffers(r.generator, r.ema, r.discriminator)
        rngs = distributed.gather(ckpt.rng_state())
        replicas = distributed.gather(fingerprint(r)) if distributed.current().enabled else None
        path = ckpt.checkpoint_path(run_dir, r.step)
        if best:
            path = run_dir / ckpt.CHECKPOINT_DIR / "best.pt"

        def write() -> Path:
            if replicas is not None and any(rep != replicas[0] for rep in replicas):
                print(f"warning: the ranks' replicas differ at step {r.step}: {replicas}", file=sys.stderr)
            if keep and path.is_file():
                return path
            state = state_dict(r, config, info, rngs, replicas)
            return ckpt.save_atomic(state, path, None if best else keep_last)

        return distributed.main_first(write, others=False, per_node=False) or path

    return save
