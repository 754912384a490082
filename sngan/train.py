"""``python -m sngan.train``: train an SNGAN with Hydra overrides.

    python -m sngan.train experiment=quickstart
    python -m sngan.train model=resnet32 dataset=cifar10 train.steps=50000
    python -m sngan.train hydra.run.dir=outputs/myrun resume=auto

The run folder (Hydra's output dir) receives config.yaml (resolved),
provenance.json, tb/ (TensorBoard), samples/, checkpoints/ and metrics.jsonl.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import hydra
import torch
from omegaconf import DictConfig, OmegaConf
from tqdm import tqdm

from sngan import checkpoint as ckpt
from sngan.cli import ensure_folder, run_or_exit
from sngan.config import TrainConfig, to_container, validate
from sngan.data import DATASETS, NATIVE_RESOLUTION, BatchSampler, ImageData, load_images, to_float
from sngan.inference import EVAL_SEED_OFFSET, generate, seeded_sampler
from sngan.losses import LOSSES
from sngan.metrics import evaluate_synthetic
from sngan.models import MODELS, build_models
from sngan.monitoring import Monitor, custom_scalars_layout
from sngan.provenance import provenance, resolve_device
from sngan.resume import check_architecture, find_resume
from sngan.scoring import Scorer, load_extractor, make_scorer
from sngan.state import Run, make_ema, restore, state_dict, update_ema
from sngan.step import d_step, g_step
from sngan.stopping import GracefulStop, Interrupted, TimeLimit, WallClock
from sngan.tracking import Tracker

CLOCK = time.monotonic  # the wall clock of max_minutes / checkpoint_minutes (tests replace it)


def lr_factor(step: int, total: int, decay: str) -> float:
    """Learning-rate multiplier for the update that follows ``step`` updates."""
    return max(0.0, 1.0 - step / total) if decay == "linear" else 1.0


def build_run(cfg: TrainConfig, data: ImageData, device: torch.device) -> Run:
    torch.manual_seed(cfg.seed)
    g, d = build_models(cfg.model.name, cfg.model.z_dim, cfg.model.width, cfg.model.spectral_norm)
    g, d = g.to(device), d.to(device)
    betas = (cfg.optim.beta1, cfg.optim.beta2)
    opt_g = torch.optim.Adam(g.parameters(), lr=cfg.optim.lr_g, betas=betas)
    opt_d = torch.optim.Adam(d.parameters(), lr=cfg.optim.lr_d, betas=betas)
    sampler = BatchSampler(data.images, seed=cfg.seed, hflip=cfg.dataset.hflip)
    fixed_z = torch.randn(cfg.train.grid_size, cfg.model.z_dim, generator=torch.Generator().manual_seed(cfg.seed))
    ema = make_ema(g) if cfg.train.ema_decay is not None else None
    return Run(g, d, opt_g, opt_d, sampler, fixed_z.to(device), ema=ema)


def evaluate(
    cfg: TrainConfig,
    run: Run,
    data: ImageData,
    tracker: Tracker,
    scorer: Scorer | None,
    save_best: Callable[[Run], Path],
) -> dict[str, float]:
    """Synthetic quality and FID/IS/KID of G (and of its EMA), from a fixed seed: same weights, same numbers.
    Keeps the checkpoint with the lowest FID (the EMA's where there is one) as best.pt."""
    device, seed = run.fixed_z.device, cfg.seed + EVAL_SEED_OFFSET
    result: dict[str, float] = {}
    nets = {"": run.generator} | ({"ema/": run.ema} if run.ema is not None else {})
    for prefix, net in nets.items():
        if data.prototypes is not None:
            found = evaluate_synthetic(seeded_sampler(net, device, seed), data.prototypes, n=cfg.train.eval_samples)
            result |= {f"{prefix}synthetic/{k}": v for k, v in found.items()}
        if scorer is not None:  # its own sampler from the same seed: python -m sngan.evaluate reproduces it
            result |= {
                f"{prefix}{scorer.rule.name}/{k}": v for k, v in scorer(seeded_sampler(net, device, seed)).items()
            }
    if result:
        tracker.metrics(result, run.step)
    key = f"{'ema/' if run.ema is not None else ''}{cfg.metrics.name}/fid"
    if key in result and (run.best_metric != key or run.best_fid is None or result[key] < run.best_fid):
        run.best_fid, run.best_step, run.best_metric = result[key], run.step, key  # another rule: start over
        save_best(run)
    return result


def set_lr(run: Run, cfg: TrainConfig) -> float:
    factor = lr_factor(run.step, cfg.train.steps, cfg.optim.decay)
    for opt, base in ((run.opt_g, cfg.optim.lr_g), (run.opt_d, cfg.optim.lr_d)):
        for group in opt.param_groups:
            group["lr"] = base * factor
    return factor


class NonFiniteError(RuntimeError):
    """An update met a non-finite loss, gradient or weight under on_nonfinite=stop."""


def handle_nonfinite(
    cfg: TrainConfig, run: Run, network: str, stats: dict[str, torch.Tensor], save: Callable[..., Path]
) -> None:
    """Count a skipped update, or save the last good state and stop.

    The saved state is labelled with the last completed step and holds the failed step's finite D
    updates, if any; a checkpoint written at the end of that step is the cleaner state and is kept."""
    if cfg.train.on_nonfinite == "skip":
        run.skipped[network] += 1
        return
    values = ", ".join(f"{k}={float(v):.4g}" for k, v in stats.items() if not k.startswith("finite"))
    nets = (run.generator, run.discriminator)
    if all(bool(torch.isfinite(p).all()) for net in nets for p in net.parameters()):
        where = f"The last good state is saved as {save(run, 'keep')}"
    else:
        where = "The weights are no longer finite, so nothing was saved; resume from the newest checkpoint"
    raise NonFiniteError(
        f"Non-finite loss, gradient or weight in the {network} update of step {run.step + 1} ({values}); the "
        f"update was not applied. {where}. Lower the learning rate or check the data, or set "
        f"train.on_nonfinite=skip to skip such updates and count them."
    )


def due(step: int, every: int, last: int) -> bool:
    return step % every == 0 or step == last


def train_loop(
    cfg: TrainConfig,
    run: Run,
    data: ImageData,
    tracker: Tracker,
    save: Callable[..., Path],
    stop: GracefulStop,
    scorer: Scorer | None = None,
    monitor: Monitor | None = None,
) -> dict[str, float]:
    loss, t = LOSSES.get(cfg.loss.name), cfg.train
    device = run.fixed_z.device
    bar = tqdm(total=t.steps, initial=run.step, disable=None, dynamic_ncols=True, desc="train")
    result: dict[str, float] = {}
    timer, timed_steps = time.perf_counter(), 0
    wall = WallClock(t.max_minutes, t.checkpoint_minutes, CLOCK)
    while run.step < t.steps:
        factor = set_lr(run, cfg)
        # Update D n_dis times, each on a fresh real batch and fresh fakes.
        for _ in range(t.n_dis):
            real = run.sampler.next(t.batch_size_d, device)
            stats = d_step(run.generator, run.discriminator, run.opt_d, loss, real, cfg.model.z_dim)
            if not stats["finite/d"]:
                handle_nonfinite(cfg, run, "discriminator", stats, save)
        # Update G once.
        stats |= g_step(run.generator, run.discriminator, run.opt_g, loss, t.batch_size_g, cfg.model.z_dim, device)
        if not stats["finite/g"]:
            handle_nonfinite(cfg, run, "generator", stats, save)
        if run.ema is not None and t.ema_decay is not None:
            update_ema(run.ema, run.generator, t.ema_decay)
        run.step += 1
        timed_steps += 1
        bar.update(1)
        # Log.
        if due(run.step, t.log_every, t.steps):
            scalars = {k: float(v) for k, v in stats.items() if not k.startswith("finite")}
            scalars |= {f"nonfinite/skipped_{k[0]}": n for k, n in run.skipped.items()}  # _d, _g
            elapsed = time.perf_counter() - timer
            scalars |= {"lr/g": cfg.optim.lr_g * factor, "lr/d": cfg.optim.lr_d * factor}
            scalars["speed/g_iters_per_s"] = timed_steps / max(elapsed, 1e-9)
            timer, timed_steps = time.perf_counter(), 0
            tracker.scalars(scalars, run.step)
            bar.set_postfix({k: f"{v:.3f}" for k, v in scalars.items() if k.startswith("loss")})
        # Monitor spectral norms, gradient norms and D's outputs (reads only: training is unchanged).
        if monitor is not None and t.monitor_every is not None and due(run.step, t.monitor_every, t.steps):
            monitor.log(run.generator, run.discriminator, run.fixed_z, tracker, run.step)
        # Sample a grid from the fixed z.
        if due(run.step, t.sample_every, t.steps):
            png = tracker.run_dir / "samples" / f"step_{run.step:08d}.png"
            tracker.images("samples/fixed_z", generate(run.generator, run.fixed_z), run.step, png)
            if run.ema is not None:
                png = png.with_name(f"ema_step_{run.step:08d}.png")
                tracker.images("samples/fixed_z_ema", generate(run.ema, run.fixed_z), run.step, png)
        # Evaluate.
        if due(run.step, t.eval_every, t.steps):
            result = evaluate(cfg, run, data, tracker, scorer, lambda r: save(r, "best")) or result
        # Save on schedule, every checkpoint_minutes, on a signal or at max_minutes; then stop if asked.
        if due(run.step, t.checkpoint_every, t.steps) or stop.requested is not None or wall.save_due():
            save(run)
            wall.saved()
        if stop.requested is not None:
            bar.close()
            raise Interrupted(stop.requested, run.step)
        if wall.out_of_time() and run.step < t.steps:
            bar.close()
            raise TimeLimit(t.max_minutes or 0.0, run.step)
    bar.close()
    return result


def start(cfg: TrainConfig, config: dict[str, Any], run_dir: Path) -> dict[str, float]:
    """Build everything, resume if asked, train, and return the final metrics."""
    device = resolve_device(cfg.device)
    ensure_folder(run_dir)  # Hydra makes it for the CLI; callers of start() may not have
    # Inception weights and resume checkpoint first: their errors come before the (slow) data load.
    inception = load_extractor(cfg.inception) if cfg.metrics.name != "none" else None
    found = find_resume(cfg.resume, run_dir, config)
    data = load_images(
        cfg.dataset.name, cfg.dataset.root, cfg.dataset.resolution or 0, cfg.dataset.split,
        cfg.dataset.size, cfg.dataset.modes, cfg.dataset.seed,
    )  # fmt: skip
    scorer = make_scorer(cfg.metrics, cfg.inception, cfg.dataset, device, data.images, inception)
    run = build_run(cfg, data, device)
    source = None
    if found is not None:
        source, state = found
        check_architecture(state["config"], config, source)
        restore(run, state, source)
        print(f"Resumed from {source} at step {run.step}.", file=sys.stderr)
    info = provenance(device)
    (run_dir / "config.yaml").write_text(OmegaConf.to_yaml(config))
    (run_dir / "provenance.json").write_text(json.dumps(info, indent=2))
    # Events after the checkpoint were written by the interrupted run: purge them.
    tracker = Tracker(run_dir, purge_step=run.step + 1 if source is not None else None)

    def save(r: Run, name: str | None = None) -> Path:
        """The rolling checkpoint of this step; name="keep": the same unless that file exists (then kept
        as it is); name="best": checkpoints/best.pt, never pruned."""
        path = ckpt.checkpoint_path(run_dir, r.step)
        if name == "keep" and path.is_file():
            return path
        path = run_dir / ckpt.CHECKPOINT_DIR / "best.pt" if name == "best" else path
        return ckpt.save_atomic(
            state_dict(r, config, info), path, None if name == "best" else cfg.train.keep_checkpoints
        )

    try:
        monitor = None
        if cfg.train.monitor_every is not None:
            fixed_real = to_float(data.images[: cfg.train.grid_size]).to(device)
            chain = MODELS.get(cfg.model.name).lipschitz_chain
            monitor = Monitor.create(run.discriminator, chain, fixed_real)
        if source is None:
            rule = cfg.metrics.name if scorer is not None else None
            tracker.writer.add_custom_scalars(custom_scalars_layout(run.discriminator, rule))
            tracker.text("config", "```\n" + OmegaConf.to_yaml(config) + "\n```")
            tracker.images("data/real", to_float(data.images[: cfg.train.grid_size]), 0)
        with GracefulStop() as stop:
            return train_loop(cfg, run, data, tracker, save, stop, scorer, monitor)
    finally:
        tracker.close()


def check_config(raw: DictConfig) -> TrainConfig:
    """Validate a composed config against the schema and the registries."""
    models = {name: MODELS.get(name).resolution for name in MODELS.names()}
    datasets = {name: NATIVE_RESOLUTION.get(name) for name in DATASETS}
    return validate(raw, models, LOSSES.names(), datasets)


@hydra.main(version_base="1.3", config_path="pkg://sngan.configs", config_name="train")
def main(raw: DictConfig) -> dict[str, float]:
    from hydra.core.hydra_config import HydraConfig

    run_dir = Path(HydraConfig.get().runtime.output_dir)
    try:
        result = run_or_exit(lambda: start(check_config(raw), to_container(raw), run_dir), NonFiniteError)
    except Interrupted as stopped:
        print(
            f"Training {stopped} with a checkpoint in {run_dir / ckpt.CHECKPOINT_DIR}. Continue with the same "
            f"command plus: hydra.run.dir={run_dir} resume=auto",
            file=sys.stderr,
        )
        sys.exit(128 + stopped.signum)
    except TimeLimit as limited:
        print(
            f"Training {limited} with a checkpoint in {run_dir / ckpt.CHECKPOINT_DIR}. Continue (e.g. in the next "
            f"job) with the same command plus: hydra.run.dir={run_dir} resume=auto",
            file=sys.stderr,
        )
        return {}
    except KeyboardInterrupt:
        latest = ckpt.find_latest(run_dir)
        print(f"Interrupted at once; newest checkpoint: {latest or 'none'}.", file=sys.stderr)
        sys.exit(130)
    if result:
        print("final: " + ", ".join(f"{k}={v:.4g}" for k, v in result.items()), file=sys.stderr)
    print(f"Run folder: {run_dir}", file=sys.stderr)
    return result


if __name__ == "__main__":
    main()
