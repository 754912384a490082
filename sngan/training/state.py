"""The mutable state of a training run, and its checkpoint form.

``Run`` holds everything that changes while training; ``state_dict`` turns it
into a plain dict that ``torch.load(weights_only=True)`` reads back, and
``restore`` puts such a dict back into a freshly built ``Run``.
"""

from __future__ import annotations

import copy
import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from sngan.data import BatchSampler
from sngan.models.sampling import label_cdf
from sngan.training.augment import Augment
from sngan.training.optim import load_optimizer
from sngan.utils import checkpoint as ckpt
from sngan.utils.distributed import rank_seed


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
    fixed_y: torch.Tensor | None = None  # class of each fixed_z row (conditional runs: one grid row per class)
    classes: list[str] | None = None  # class names of a conditional run, index = label
    class_counts: list[int] | None = None  # training images per class (conditional runs)
    fake_cdf: torch.Tensor | None = None  # fakes' class distribution (models.sampling.label_cdf); None: uniform
    augment: Augment | None = None  # what D sees (augment=diffaugment|ada); ADA's p and r_t sums inside
    tracker_run: dict[str, str] | None = None  # {"logger": "wandb", "id": ...}: the tracker run a resume continues
    data_digest: str | None = None  # the training images' content digest (ImageData.digest): a resume checks it
    data_count: int | None = None  # how many training images
    # What the updates call (DistributedDataParallel wrappers under torchrun, torch.compile'd modules
    # under train.compile; None: the modules themselves). The *_read ones are the network read by the
    # other one's update (no all-reduce): G in the D update, D in the G update.
    g_update: torch.nn.Module | None = None
    d_update: torch.nn.Module | None = None
    g_read: torch.nn.Module | None = None
    d_read: torch.nn.Module | None = None

    def callables(self) -> tuple[torch.nn.Module, torch.nn.Module, torch.nn.Module, torch.nn.Module]:
        """(g_update, g_read, d_update, d_read), each the wrapper where there is one, else the module."""
        g, d = self.generator, self.discriminator
        pick = lambda net, module: net if net is not None else module  # noqa: E731
        return pick(self.g_update, g), pick(self.g_read, g), pick(self.d_update, d), pick(self.d_read, d)


def make_ema(generator: torch.nn.Module) -> torch.nn.Module:
    ema = copy.deepcopy(generator).eval()
    ema.requires_grad_(False)
    return ema


@torch.no_grad()
def update_ema(ema: torch.nn.Module, generator: torch.nn.Module, decay: float) -> None:
    """Average parameters; copy buffers (BatchNorm running statistics) as they are."""
    averaged, current = list(ema.parameters()), list(generator.parameters())
    if len(averaged) != len(current):
        raise ValueError("the EMA and the generator have different parameters")
    torch._foreach_lerp_(averaged, current, 1.0 - decay)  # one kernel for all of them
    kept, now = list(ema.buffers()), list(generator.buffers())
    if len(kept) != len(now):
        raise ValueError("the EMA and the generator have different buffers")
    if kept:
        torch._foreach_copy_(kept, now)  # as few kernels as the dtypes allow, not one a buffer


def fingerprint(run: Run) -> dict[str, str]:
    """SHA-256 of each network's weights and buffers (spectral-norm u and v included): torchrun's ranks
    must hold identical replicas, and the checkpoint records that they did."""
    out = {}
    for name, net in (("generator", run.generator), ("discriminator", run.discriminator), ("ema", run.ema)):
        if net is not None:
            digest = hashlib.sha256()
            for key, value in net.state_dict().items():
                digest.update(key.encode())
                digest.update(value.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
            out[name] = digest.hexdigest()
    if run.augment is not None:  # every rank must use one p
        out["augment"] = hashlib.sha256(run.augment.p.cpu().numpy().tobytes()).hexdigest()
    return out


def state_dict(
    run: Run,
    config: dict[str, Any],
    info: dict[str, Any],
    rngs: list[dict[str, Any]] | None = None,
    replicas: list[dict[str, str]] | None = None,
) -> dict[str, Any]:
    """Under torchrun, ``rngs``: every rank's RNG state in rank order (default: this process's);
    ``replicas``: every rank's ``fingerprint``."""
    rngs = rngs or [ckpt.rng_state()]
    return {
        "format_version": ckpt.FORMAT_VERSION,
        "step": run.step,
        "generator": run.generator.state_dict(),
        "discriminator": run.discriminator.state_dict(),
        "opt_g": run.opt_g.state_dict(),
        "opt_d": run.opt_d.state_dict(),
        "sampler": run.sampler.state_dict(),
        "fixed_z": run.fixed_z.cpu(),
        "fixed_y": run.fixed_y.cpu() if run.fixed_y is not None else None,
        "classes": list(run.classes) if run.classes is not None else None,
        "class_counts": list(run.class_counts) if run.class_counts is not None else None,
        "skipped": dict(run.skipped),
        "ema": run.ema.state_dict() if run.ema is not None else None,
        "best": {"metric": run.best_metric, "fid": run.best_fid, "step": run.best_step},
        "tracker_run": dict(run.tracker_run) if run.tracker_run is not None else None,
        "augment": run.augment.state_dict() if run.augment is not None else None,
        "data": {"digest": run.data_digest, "count": run.data_count} if run.data_digest is not None else None,
        "rng": rngs[0],
        "rng_ranks": rngs if len(rngs) > 1 else None,
        "replicas": replicas if replicas and len(replicas) > 1 else None,
        "config": config,
        "provenance": info,
    }


def _copied(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.detach().clone()
    if isinstance(value, dict):
        return {k: _copied(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_copied(v) for v in value)
    return value


def snapshot(run: Run) -> dict[str, Any]:
    """A copy (on the device) of everything a step changes: networks, optimizers, EMA, the data order and
    the RNGs. ``rollback`` puts it back, so that a step that fails half-way (a finite D update, then a
    non-finite G update) leaves exactly the state after the last completed step."""
    trained = _copied({
        "generator": run.generator.state_dict(), "discriminator": run.discriminator.state_dict(),
        "opt_g": run.opt_g.state_dict(), "opt_d": run.opt_d.state_dict(),
        "ema": run.ema.state_dict() if run.ema is not None else None,
    })  # fmt: skip
    # The data order and the RNG states come back as fresh copies already (and Python's RNG state is a
    # 625-integer tuple that copying element by element would cost more than the networks).
    augment = run.augment.state_dict(run.augment.p.device) if run.augment is not None else None  # copies, on it
    return trained | {
        "sampler": run.sampler.state_dict(),
        "rng": ckpt.rng_state(),
        "step": run.step,
        "augment": augment,
    }


def _load_trained(run: Run, state: dict[str, Any]) -> None:
    """Networks, optimizers, data order and EMA from a checkpoint or a snapshot."""
    run.generator.load_state_dict(state["generator"])
    run.discriminator.load_state_dict(state["discriminator"])
    load_optimizer(run.opt_g, state["opt_g"])
    load_optimizer(run.opt_d, state["opt_d"])
    run.sampler.load_state_dict(state["sampler"])
    if run.augment is not None and state.get("augment") is not None:  # else (augment turned on) p starts afresh
        run.augment.load_state_dict(state["augment"])
    if run.ema is not None:
        # A run that turns EMA on mid-way starts the average from G.
        run.ema.load_state_dict(state["ema"] if state.get("ema") is not None else state["generator"])


def rollback(run: Run, snap: dict[str, Any]) -> None:
    _load_trained(run, snap)
    ckpt.set_rng_state(snap["rng"])
    run.step = snap["step"]


def restore(run: Run, state: dict[str, Any], path: Path, rank: int = 0, seed: int = 0) -> None:
    """Put ``state`` into ``run``. ``rank`` takes its own RNG state; a rank the saved run did not have
    (resuming at a larger world size) gets a fresh stream from (seed, rank, step) instead."""
    try:
        _load_trained(run, state)
    except (KeyError, RuntimeError, ValueError) as exc:
        reason = str(exc).strip().splitlines()[0]
        raise ckpt.CheckpointError(
            f"Checkpoint '{path}' does not fit this configuration ({reason}). Resume with the model, "
            f"width and dataset the run was started with (its config is stored in the checkpoint)."
        ) from exc
    run.fixed_z = state["fixed_z"].to(run.fixed_z.device)
    if state.get("fixed_y") is not None:
        run.fixed_y = state["fixed_y"].to(run.fixed_z.device)
    run.step = int(state["step"])
    run.skipped = dict(state["skipped"])
    best = state.get("best") or {}
    run.best_fid, run.best_step, run.best_metric = best.get("fid"), best.get("step"), best.get("metric")
    run.tracker_run = state.get("tracker_run")
    ranks = state.get("rng_ranks") or [state["rng"]]
    if rank < len(ranks):
        ckpt.set_rng_state(ranks[rank])
    else:
        torch.manual_seed(rank_seed(seed, rank, run.step))


def set_class_mix(run: Run, counts: list[int] | None, by_counts: bool) -> None:
    """The run's class mix (training images per class) and the fakes' class draw that follows from it:
    by the counts (``by_counts``: train.fake_labels=data; uniform where they are balanced), or uniform."""
    run.class_counts = list(counts) if counts is not None else None
    run.fake_cdf = label_cdf(run.class_counts, run.fixed_z.device) if by_counts else None


def keep_class_mix(run: Run, state: dict[str, Any], by_counts: bool) -> list[int] | None:
    """A resumed conditional run keeps the class mix it started with, the checkpoint's, so that its fakes
    and its FIDs mean the same across the resume (a checkpoint from before the mix was recorded: uniform,
    as it was drawn). ``by_counts``: train.fake_labels=data. Returns the dataset's own counts where they
    differ from the checkpoint's (images moved between classes since), else None."""
    if run.classes is None:
        return None
    stored, now = state.get("class_counts"), run.class_counts
    set_class_mix(run, stored, by_counts)
    return now if stored is not None and now is not None and list(stored) != now else None
