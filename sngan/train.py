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
from collections.abc import Callable
from pathlib import Path
from typing import Any

import hydra
import torch
from omegaconf import DictConfig, OmegaConf

from sngan.cli import run_lock
from sngan.cli.errors import ensure_folder, run_or_exit
from sngan.cli.hydra_checks import register_resolvers, remove_if_new, write_hydra_record
from sngan.cli.log_file import copied_to
from sngan.cli.provenance import provenance, resolve_device
from sngan.cli.settings import check_train
from sngan.config import LIMIT_SEED, ConfigError, TrainConfig, signal_number, to_container
from sngan.data import BatchSampler, ImageData, to_float
from sngan.metrics.scoring import describe_reference, load_dataset, load_extractor, make_scorer
from sngan.models import MODELS, build_models
from sngan.training import dry_run, stopping
from sngan.training.augment import Augment
from sngan.training.loop import NonFiniteError, train_loop
from sngan.training.monitoring import Monitor, custom_scalars_layout
from sngan.training.optim import adam
from sngan.training.resume import find_resume, finished_note, later_checkpoints, resume_from, set_aside_later
from sngan.training.speed import Speed, memory_format, resolve, set_backends
from sngan.training.state import Run, fingerprint, make_ema, set_class_mix, state_dict
from sngan.training.step import EAGER
from sngan.training.stopping import GracefulStop, Interrupted, TimeLimit, requeue
from sngan.training.trackers import check_installed, open_mirror
from sngan.training.tracking import NullTracker, Tracker
from sngan.training.wrappers import CompileFailed, CudaContextLost, accelerate, distribute
from sngan.utils import checkpoint as ckpt
from sngan.utils import distributed
from sngan.utils.distributed import Dist, RankFailed
from sngan.utils.memory import out_of_memory, what_to_lower
from sngan.utils.outputs import write_text

register_resolvers()


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


def class_names(cfg: TrainConfig, data: ImageData) -> list[str] | None:
    """The classes a conditional run learns (None for an unconditional run)."""
    if not cfg.model.conditional:
        return None
    if data.labels is None or not data.classes:
        hint = {
            "folder": f"put the images of each class in a subfolder of {cfg.dataset.root} (one folder per class)",
            "stl10": "use dataset.split=train, the labeled split",
        }.get(cfg.dataset.name, "use a dataset with labels")
        raise ConfigError(
            f"model.conditional=true needs class labels, but dataset '{cfg.dataset.name}' (split "
            f"'{cfg.dataset.split}') has none here: {hint}, or train unconditionally (model.conditional=false)."
        )
    return list(data.classes)


def check_world(cfg: TrainConfig, here: Dist, device: torch.device) -> None:
    """What this launch needs beyond a valid config: batches G's BatchNorm trains on in every process, split
    evenly over the processes of a torchrun launch, and SyncBatchNorm only where torch runs it."""
    smallest = MODELS.get(cfg.model.name).min_batch
    for key in ("batch_size_d", "batch_size_g"):  # G makes batch_size_d fakes in each D update
        value = getattr(cfg.train, key)
        if here.enabled and (value % here.world or value // here.world < smallest):
            raise ConfigError(
                f"Invalid configuration: train.{key}={value} is the global batch and must split evenly over "
                f"the {here.world} processes of this torchrun launch, at least {smallest} per process (model "
                f"'{cfg.model.name}': {_why_min_batch(smallest)}). Use a multiple of {here.world} of at least "
                f"{smallest * here.world}, or another --nproc-per-node / --nnodes."
            )
        if value < smallest:
            raise ConfigError(
                f"Invalid configuration: train.{key}={value} is too small for model '{cfg.model.name}': "
                f"{_why_min_batch(smallest)}. Use train.{key}={smallest} or more, or a model that trains on "
                f"{value} ({', '.join(n for n in MODELS.names() if MODELS.get(n).min_batch <= value)})."
            )
    if not here.enabled:
        return
    if cfg.train.sync_bn and device.type != "cuda":
        raise ConfigError(
            f"Invalid configuration: train.sync_bn=true, but torch's SyncBatchNorm runs only on CUDA devices "
            f"and this launch trains on {device.type}. Set train.sync_bn=false (each rank's BatchNorm uses its "
            f"own share of the batch) or launch on GPUs."
        )


def _why_min_batch(smallest: int) -> str:
    return (
        f"its generator's first BatchNorm normalizes each feature over the images of the batch, and torch "
        f"refuses to train one on fewer than {smallest}"
    )


def check_data_size(cfg: TrainConfig, images: int) -> None:
    """A batch of real images larger than the dataset would repeat images in one batch, and a huge one (a
    typo) would allocate terabytes after a minute of drawing indices. Under torchrun every rank draws the
    same global batch from all the images and keeps its share: the limit holds for the global batch."""
    value = cfg.train.batch_size_d
    if value > images:
        synthetic = cfg.dataset.name == "synthetic"
        more = ", or make the synthetic dataset larger (dataset.size)" if synthetic else ""
        raise ConfigError(
            f"Invalid configuration: train.batch_size_d={value} is larger than the dataset, which holds {images} "
            f"images ('{cfg.dataset.name}', split '{cfg.dataset.split}'), and a batch of real images cannot hold "
            f"more images than that. Use train.batch_size_d={images} or less (the paper uses 64){more}."
        )


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


def make_saver(run_dir: Path, config: dict[str, Any], info: dict[str, Any], keep: int) -> Callable[..., Path]:
    def save(r: Run, name: str | None = None) -> Path:
        """The rolling checkpoint of this step; name="keep": the same unless that file exists (then kept
        as it is); name="best": checkpoints/best.pt, never pruned. Every rank calls it at the same step
        (it gathers their RNG states); rank 0 writes."""
        # BatchNorm statistics (G's; D's under constraint=bn), which each rank updates from its own batches: rank 0's
        distributed.sync_buffers(r.generator, r.ema, r.discriminator)
        rngs = distributed.gather(ckpt.rng_state())
        replicas = distributed.gather(fingerprint(r)) if distributed.current().enabled else None
        path = ckpt.checkpoint_path(run_dir, r.step)
        if name == "best":
            path = run_dir / ckpt.CHECKPOINT_DIR / "best.pt"

        def write() -> Path:
            if replicas is not None and any(rep != replicas[0] for rep in replicas):
                print(f"warning: the ranks' replicas differ at step {r.step}: {replicas}", file=sys.stderr)
            if name == "keep" and path.is_file():
                return path
            state = state_dict(r, config, info, rngs, replicas)
            return ckpt.save_atomic(state, path, None if name == "best" else keep)

        return distributed.main_first(write, others=False, per_node=False) or path

    return save


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
            stopping.OUTSIDE_STEPS[0] = f"as the run ended: its checkpoints are in {run_dir / ckpt.CHECKPOINT_DIR}"


def _start(
    cfg: TrainConfig, config: dict[str, Any], run_dir: Path, stop: GracefulStop, record: Callable[[], None]
) -> dict[str, float]:
    here = distributed.current()
    device = resolve_device(cfg.device, here.local_rank if here.enabled else None)
    check_world(cfg, here, device)
    check_installed(cfg.logger.name)  # logger=wandb|mlflow without its package: said before anything loads
    # Inception weights and resume checkpoint first: their errors come before the (slow) data load. Rank 0
    # goes first: a download or a cache file is made once, and its failure stops every rank.
    inception = None
    if cfg.metrics.name != "none":
        inception = distributed.main_first(lambda: load_extractor(cfg.inception))
    found = distributed.broadcast(
        distributed.main_first(lambda: find_resume(cfg.resume, run_dir, config), others=False, per_node=False)
    )
    done = finished_note(cfg.resume, found, config)  # a sweep's rerun: its finished cells are not trained again
    if done is not None:
        if here.is_main:
            print(f"note: {done}", file=sys.stderr)
        return {}
    split = distributed.main_first(lambda: load_dataset(cfg.dataset))
    limit = cfg.dataset.limit  # a fixed subset to train on; the references below keep the whole split
    data = split.subset(limit, LIMIT_SEED) if limit is not None else split
    class_names(cfg, data)  # a conditional run on unlabeled data: the first thing to say
    check_data_size(cfg, len(data.images))  # before the reference statistics, the networks and the placing
    scorer = None
    if not cfg.train.dry_run:  # a dry run only says where the reference statistics are
        scorer = distributed.main_first(
            lambda: make_scorer(cfg.metrics, cfg.inception, cfg.dataset, device, split.images, inception, here.is_main)
        )
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
    distribute(run, cfg, device, here)
    accelerate(run, speed)
    info = provenance(device) | {"speed": speed.as_dict()}
    info |= {"world_size": here.world, "sync_bn": cfg.train.sync_bn} if here.enabled else {}
    if cfg.train.dry_run:
        if here.is_main:
            print_plan(cfg, config, run, data, device, speed, info, source, run_dir)
        return {}
    tracker: Tracker = NullTracker(run_dir)
    if here.is_main:
        tracker = open_run_folder(cfg, config, run, run_dir, info, source, record)
    save = make_saver(run_dir, config, info, cfg.train.keep_checkpoints)
    ok = False
    try:
        monitor = None
        if cfg.train.monitor_every is not None and here.is_main:
            monitor = make_monitor(run, data, cfg.model.name, cfg.train.grid_size, device)
        if source is None and here.is_main:
            rule = cfg.metrics.name if scorer is not None else None
            tracker.writer.add_custom_scalars(custom_scalars_layout(run.discriminator, rule))
            tracker.text("config", "```\n" + OmegaConf.to_yaml(config) + "\n```")
            tracker.images("data/real", to_float(data.images[: cfg.train.grid_size]), 0)
        fell_back = record_fallback(run_dir, info, here.is_main)
        result = train_loop(cfg, run, data, tracker, save, stop, scorer, monitor, speed, fell_back)
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
        write_text(run_dir / "config.yaml", OmegaConf.to_yaml(config))
        write_provenance(run_dir, info)
        purge = run.step + 1 if source is not None else None  # events after the checkpoint: the interrupted run's
        return Tracker(run_dir, purge_step=purge, mirror=mirror)
    except BaseException:
        if mirror is not None:
            mirror.close(False)
        raise


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
    size = dry_run.checkpoint_bytes(run, config, info)
    reference = describe_reference(cfg.metrics, cfg.inception, cfg.dataset)
    later = later_checkpoints(run_dir, run.step) if source is not None else []
    lines = dry_run.report(cfg, run, data, device, speed.as_dict(), reference, source, size, later)
    print(f"{lines[0]}\n\nresolved settings:\n{OmegaConf.to_yaml(config)}\n" + "\n".join(lines[1:]), flush=True)


def make_monitor(run: Run, data: ImageData, model: str, grid_size: int, device: torch.device) -> Monitor:
    """The spectral monitor, reading D's outputs on the first ``grid_size`` training images."""
    fixed_real = to_float(data.images[:grid_size]).to(device)
    fixed_real_y = data.labels[:grid_size].to(device) if run.classes else None
    return Monitor.create(run.discriminator, MODELS.get(model).lipschitz_chain, fixed_real, fixed_real_y)


def resolve_speed(cfg: TrainConfig, device: torch.device, data_bytes: int, ddp: bool) -> tuple[Speed, list[str]]:
    t = cfg.train
    return resolve(device, t.precision, t.tf32, t.compile, t.channels_last, t.data_on, data_bytes, ddp, t.sync_bn)


@hydra.main(version_base="1.3", config_path="pkg://sngan.configs", config_name="train")
def main(raw: DictConfig) -> dict[str, float]:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    here = distributed.current()
    if here.enabled and HydraConfig.get().mode == RunMode.MULTIRUN:
        print("error: torchrun runs one training run over several processes; it cannot run a Hydra sweep (-m). "
              "Launch each run of the sweep with its own torchrun, or sweep with hydra/launcher=submitit_slurm "
              "on one GPU per run.", file=sys.stderr)  # fmt: skip
        sys.exit(2)
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    say = (lambda text: print(text, file=sys.stderr)) if here.is_main else (lambda text: None)
    # The run's story, after the fact: held back until the run starts, so that a refused start or a dry run
    # leaves the folder's log (and Hydra's record of the command, written then too) as it was.
    with copied_to(run_dir / "train.log", enabled=here.is_main, held=True) as commit:
        started: list[bool] = []

        def record() -> None:
            write_hydra_record(raw, run_dir)
            commit()
            started.append(True)

        try:
            return _main(raw, run_dir, here, say, record)
        except Exception:  # a crash: its log is kept, the folder too
            started.append(True)
            raise
        finally:
            if not started and here.is_main:
                remove_if_new(run_dir)  # a refusal, a dry run or Ctrl-C before the start: no new empty folder


def _main(
    raw: DictConfig, run_dir: Path, here: Dist, say: Callable[[str], None], record: Callable[[], None]
) -> dict[str, float]:
    resume_hint = f"the same command plus: hydra.run.dir={run_dir} resume=auto"
    try:
        result = run_or_exit(
            lambda: start(check_train(raw), to_container(raw), run_dir, record),
            NonFiniteError, RankFailed, CompileFailed, CudaContextLost,
        )  # fmt: skip
    except Interrupted as stopped:
        where = f"Training {stopped} with a checkpoint in {run_dir / ckpt.CHECKPOINT_DIR}."
        if raw.train.requeue_signal is not None and stopped.signum == signal_number(raw.train.requeue_signal):
            if here.is_main:
                say(f"{where} {requeue()} The requeued job continues with {resume_hint}")
            sys.exit(0)
        say(f"{where} Continue with {resume_hint}")
        sys.exit(128 + stopped.signum)
    except TimeLimit as limited:
        say(f"Training {limited} with a checkpoint in {run_dir / ckpt.CHECKPOINT_DIR}. Continue (e.g. in the next "
            f"job) with {resume_hint}")  # fmt: skip
        return {}
    except KeyboardInterrupt:
        latest = ckpt.find_latest(run_dir)
        say(f"Interrupted at once; newest checkpoint: {latest or 'none'}.")
        sys.exit(130)
    if result:
        say("final: " + ", ".join(f"{k}={v:.4g}" for k, v in result.items()))
    if not raw.train.dry_run:
        say(f"Run folder: {run_dir}")
    return result


def launch() -> None:
    """The command line: under torchrun, join the other ranks first (they share rank 0's run folder)."""
    distributed.setup()
    clean = False
    try:
        main()
        clean = True
    except SystemExit as exc:
        clean = exc.code in (None, 0)  # every rank stops alike (a requeue, a time limit)
        raise
    finally:
        distributed.teardown(clean)


if __name__ == "__main__":
    # Run the copy imported as `sngan.train`, not this `__main__` one: launchers that pickle the task
    # function (submitit) then pickle it by reference instead of by value.
    from sngan.train import launch as launch_module

    launch_module()
