"""The train command's start-up, in named phases: check the launch; load the Inception network and find the
checkpoint to resume; load the training set and the reference statistics; construct the run and resume it;
a dry run's report, or the run folder and the training loop."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from sngan.cli import run_lock
from sngan.cli.build import build_run, make_monitor, make_saver, plan_of, resolve_speed
from sngan.cli.provenance import provenance, resolve_device
from sngan.cli.settings import check_data_size, check_world, class_names
from sngan.config import LIMIT_SEED, TrainConfig, signal_number, to_yaml
from sngan.data import ImageData, load_split, to_float
from sngan.metrics.scoring import Extractor, Scorer, extractor_for, make_scorer
from sngan.training import dry_run, stopping
from sngan.training.loop import Loop
from sngan.training.monitoring import custom_scalars_layout
from sngan.training.resume import find_resume, finished_note, resume_from, set_aside_later
from sngan.training.speed import Speed, set_backends
from sngan.training.state import Run
from sngan.training.stopping import GracefulStop
from sngan.training.trackers import check_installed, open_mirror
from sngan.training.tracking import NullTracker, Tracker
from sngan.training.wrappers import accelerate, distribute
from sngan.utils import checkpoint as ckpt
from sngan.utils import distributed
from sngan.utils.outputs import ensure_folder, write_text

Found = tuple[Path, dict[str, Any]] | None  # the checkpoint to resume and its state


def start(
    cfg: TrainConfig, config: dict[str, Any], run_dir: Path, record: Callable[[], None] | None = None
) -> dict[str, float]:
    """Build everything, resume if asked, train, and return the final metrics. Stop signals (and the
    requeue signal) are caught from here on: one that arrives while setting up takes effect after the
    first step, with a checkpoint. ``record``: what the command line writes into the run folder once the run
    has passed every check and starts (Hydra's record of the command, the log); a refused start and a dry
    run write nothing."""
    extra = () if cfg.train.requeue_signal is None else (signal_number(cfg.train.requeue_signal),)
    with GracefulStop(extra) as stop:
        ensure_folder(run_dir)  # Hydra makes it for the CLI; callers of start() may not have
        # One training per run folder (the CLI's Hydra callback took the lock already; rank 0 holds it).
        lock = run_lock.hold(run_dir) if distributed.current().is_main else None
        try:
            return _start(cfg, config, run_dir, stop, record or (lambda: None))
        finally:
            if lock is not None:
                lock.release()
            ended = f"the run ended; its checkpoints are in {run_dir / ckpt.CHECKPOINT_DIR}"
            stopping.report_stops_with(lambda: ended)  # what a Ctrl-C from now on says


def _start(
    cfg: TrainConfig, config: dict[str, Any], run_dir: Path, stop: GracefulStop, record: Callable[[], None]
) -> dict[str, float]:
    here = distributed.current()
    # Check the launch: the device, the processes' batches, the logger's package (before anything loads).
    device = resolve_device(cfg.device, here.local_rank if here.enabled else None)
    check_world(cfg, here, device)
    check_installed(cfg.logger.name)
    # Load the Inception network and find the checkpoint to resume: their errors come before the slow data load.
    inception, found = inception_and_resume(cfg, config, run_dir)
    done = finished_note(cfg.resume, found, config)  # a sweep's rerun: its finished cells are not trained again
    if done is not None:
        if here.is_main:
            print(f"note: {done}", file=sys.stderr)
        return {}
    # Load the training set and the reference statistics.
    data, scorer = training_set(cfg, device, inception)
    # Construct the networks, optimizers and sampler; resume.
    run, speed, source = construct(cfg, config, data, device, found)
    info = provenance(device) | {"speed": speed.as_dict()}
    info |= {"world_size": here.world, "sync_bn": cfg.train.sync_bn} if here.enabled else {}
    # A dry run reports the plan and stops: nothing is written.
    if cfg.train.dry_run:
        if here.is_main:
            dry_run.print_plan(cfg, config, run, data, device, speed, info, source, run_dir)
        return {}
    # Train.
    return train(cfg, config, run_dir, run, data, scorer, speed, info, source, stop, record)


def inception_and_resume(cfg: TrainConfig, config: dict[str, Any], run_dir: Path) -> tuple[Extractor | None, Found]:
    """Rank 0 first: a download or a cache file is made once, and its failure stops every rank."""
    inception = None
    if cfg.metrics.name != "none":
        inception = distributed.main_first(lambda: extractor_for(cfg.metrics, cfg.inception))
    find = lambda: find_resume(cfg.resume, run_dir, config)  # noqa: E731
    return inception, distributed.broadcast(distributed.main_first(find, others=False, per_node=False))


def training_set(
    cfg: TrainConfig, device: torch.device, inception: Extractor | None
) -> tuple[ImageData, Scorer | None]:
    """The images to train on (dataset.limit: a fixed subset; the references keep the whole split), checked
    against the settings, and the scorer with its reference statistics (none for a dry run: it only says
    where they are)."""
    here = distributed.current()
    split = distributed.main_first(lambda: load_split(cfg.dataset))
    limit = cfg.dataset.limit
    data = split.subset(limit, LIMIT_SEED) if limit is not None else split
    class_names(cfg, data)  # a conditional run on unlabeled data: the first thing to say
    check_data_size(cfg, len(data.images))  # before the reference statistics, the networks and the placing
    if cfg.train.dry_run:
        return data, None
    metrics, images = cfg.metrics, split.images
    make = lambda: make_scorer(metrics, cfg.inception, cfg.dataset, device, images, inception, here.is_main)  # noqa: E731
    return data, distributed.main_first(make)


def construct(
    cfg: TrainConfig, config: dict[str, Any], data: ImageData, device: torch.device, found: Found
) -> tuple[Run, Speed, Path | None]:
    """The run at its start or at the checkpoint ``found``, wrapped for torchrun and compiled as the speed
    settings say; returns it, those settings and the checkpoint it resumed (None: a new run)."""
    here = distributed.current()
    speed, notes = resolve_speed(cfg, device, data.images.nbytes, here.enabled)
    for note in notes if here.is_main else ():
        print(f"note: {note}", file=sys.stderr)
    set_backends(speed, device)
    run = build_run(cfg, data, device, here, speed)
    if here.rank > 0:  # each rank its own noise; rank 0 goes on from its initialisation's stream
        torch.manual_seed(distributed.rank_seed(cfg.seed, here.rank))
    source = None
    if found is not None:
        source, state = found
        resume_from(run, state, source, config, cfg.seed, cfg.train.fake_labels == "data")
    distribute(run, cfg.train.sync_bn, device, here)
    accelerate(run, speed)
    return run, speed, source


def train(
    cfg: TrainConfig,
    config: dict[str, Any],
    run_dir: Path,
    run: Run,
    data: ImageData,
    scorer: Scorer | None,
    speed: Speed,
    info: dict[str, Any],
    source: Path | None,
    stop: GracefulStop,
    record: Callable[[], None],
) -> dict[str, float]:
    """Open the run folder (rank 0), then train; the tracker is closed whatever happens."""
    here = distributed.current()
    tracker: Tracker = NullTracker(run_dir)
    if here.is_main:
        tracker = open_run_folder(cfg, config, run, run_dir, info, source, record)
    ok = False
    try:
        monitor = None
        if cfg.train.monitor_every is not None and here.is_main:
            monitor = make_monitor(run, data, cfg.model.name, cfg.train.grid_size, device=run.fixed_z.device)
        if source is None and here.is_main:  # a new run: the layout of its scalars, its config, real images
            rule = cfg.metrics.name if scorer is not None else None
            tracker.writer.add_custom_scalars(custom_scalars_layout(run.discriminator, rule))
            tracker.text("config", "```\n" + to_yaml(config) + "\n```")
            tracker.images("data/real", to_float(data.images[: cfg.train.grid_size]), 0)
        save = make_saver(run_dir, config, info, cfg.train.keep_checkpoints)
        fell_back = record_fallback(run_dir, info, here.is_main)
        result = Loop(run, plan_of(cfg), data, tracker, save, stop, scorer, monitor, speed, fell_back).train()
        ok = True
        return result
    finally:
        tracker.close(ok)


def open_run_folder(
    cfg: TrainConfig,
    config: dict[str, Any],
    run: Run,
    run_dir: Path,
    info: dict[str, Any],
    source: Path | None,
    record: Callable[[], None],
) -> Tracker:
    """The run starts (rank 0): the tracker beside TensorBoard opens first, so that its failure is said
    before anything is written; then the command's record, a rewind's set-aside checkpoints, config.yaml,
    provenance.json and TensorBoard. A resumed run continues its tracker run."""
    mirror = open_mirror(cfg.logger, cfg.run_name, config, run_dir, run.tracker_run)
    run.tracker_run = {"logger": mirror.name, "id": mirror.run_id} if mirror is not None else run.tracker_run
    try:
        record()
        if source is not None:
            set_aside_later(run_dir, run.step)  # a rewind: the run's later checkpoints move aside
        write_text(run_dir / "config.yaml", to_yaml(config))
        write_provenance(run_dir, info)
        purge = run.step + 1 if source is not None else None  # events after the checkpoint: the interrupted run's
        return Tracker(run_dir, purge_step=purge, mirror=mirror)
    except BaseException:
        if mirror is not None:
            mirror.close(False)
        raise


def write_provenance(run_dir: Path, info: dict[str, Any]) -> None:
    write_text(run_dir / "provenance.json", json.dumps(info, indent=2))


def record_fallback(run_dir: Path, info: dict[str, Any], is_main: bool) -> Callable[[Speed, str], None]:
    """What a compile that fell back to eager changes: provenance.json and the checkpoints from then on
    record the settings the run trains with, and why they are not the ones it started with."""

    def fell_back(speed: Speed, why: str) -> None:
        info["speed"] = speed.as_dict()
        info["speed_fallback"] = why
        if is_main:
            write_provenance(run_dir, info)

    return fell_back
