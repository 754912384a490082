"""Benchmarks that print figures (never timed tests). One JSON line per measurement, flushed as
it goes, so a time-limited run keeps what it measured.

    python scripts/benchmark.py train                     # every model x precision/compile setting
    python scripts/benchmark.py train --models resnet32 --settings bf16-max,fp32-tf32 --steps 100
    python scripts/benchmark.py train --device cpu --width 0.25 --steps 5   # narrow models on the CPU
    python scripts/benchmark.py train --command "python other/train.py ..." --command-iters 2000
    python scripts/benchmark.py quality                   # mode coverage of each setting vs fp32 eager

    python scripts/benchmark.py fid                       # FID of 10,000 samples, generation included
    python scripts/benchmark.py fid --n 2000 --device cpu --model cnn32 --width 0.25
    python scripts/benchmark.py fid --out bench.jsonl
    python scripts/benchmark.py monitor --model resnet32 --device cpu   # cost of spectral monitoring
    python scripts/benchmark.py methods --out fig10       # the paper's Figure 10: seconds per 100 G updates
    python scripts/benchmark.py snapshot                  # what on_nonfinite=stop copies before each step

``train`` times the trainer's own step (``sngan.training.iteration.generator_iteration``: n_dis D updates on
device-resident data, one G update, the non-finite check) for each registered model at
the paper's batch sizes (D 64, G 128, n_dis 5), resnet32 first, for each
precision/compile setting: generator iterations per second, milliseconds of one D and
one G update, peak GPU memory and the warm-up (compilation) time. ``--command`` also
times another trainer given as a shell command running ``--command-iters`` iterations
(its start-up included).

``methods`` times, as ``train`` does, 100 generator updates of the standard CNN (n_dis 5, batches of
64) for each way of constraining D, by default the four of the paper's Figure 10 (WGAN-GP, WN, SN and
the unconstrained "vanilla" D), and draws them: OUT/fig10_time_per_100_updates.png, .csv and .jsonl.

``quality`` trains the quick start's network on the synthetic data for 2,000 steps with
seeds 0 and 1 in each setting and reports the modes covered against fp32 eager.

``fid`` times, for an untrained generator of the chosen model: generating n images,
their Inception features and logits (fp32, TF32 off), and FID/IS against reference
statistics (KID too); it reports the wall time and feature images per second. Without
the real Inception weights (an offline host) it times the same network with seeded
random weights and says so in every line ("weights": "random").
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sngan.cli.errors import run_or_exit
from sngan.cli.provenance import device_name, resolve_device
from sngan.config import MetricsConfig
from sngan.metrics.features import extract, full_fp32, generated_batches
from sngan.metrics.fid import KID_FEATURES_KEPT as PRDC_MAX
from sngan.metrics.fid import ReferenceStats
from sngan.metrics.inception import InceptionError, InceptionFeatures, random_state_dict, resolve_weights
from sngan.metrics.measures import measure, prdc_reals
from sngan.metrics.prdc import prdc
from sngan.models import build_models


def emit(record: dict[str, Any], out: Path | None) -> None:
    line = json.dumps(record)
    print(line, flush=True)
    if out is not None:
        with open(out, "a") as f:
            f.write(line + "\n")


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def peak_mib(device: torch.device) -> int | None:
    return round(torch.cuda.max_memory_allocated(device) / 2**20) if device.type == "cuda" else None


def load_inception(weights: str | None, download: bool = True) -> tuple[InceptionFeatures, str]:
    try:
        found = resolve_weights(weights, download=download and weights is None)
        return InceptionFeatures.from_file(found), "real"
    except InceptionError as exc:
        reason = str(exc).split(". Download")[0]
        print(f"note: {reason}. Timing the same network with seeded random weights instead.", file=sys.stderr)
        return InceptionFeatures(random_state_dict(seed=0)), "random"


def bench_fid(args: argparse.Namespace) -> None:
    device = resolve_device(args.device)
    torch.manual_seed(0)
    generator, _ = build_models(args.model, args.z_dim, args.width)
    generator = generator.to(device).eval()
    extractor, kind = load_inception(args.weights, download=not args.offline)
    extractor = extractor.place(device)
    rng = np.random.default_rng(0)
    reference = ReferenceStats(np.zeros(2048), np.eye(2048), rng.normal(size=(2000, 2048)).astype(np.float32))
    # FID/IS/KID on the same n images (IS in 10 splits of n / 10); the four numbers timed apart
    rule = MetricsConfig("benchmark", args.n, "train", None, is_split_size=max(2, args.n // 10), prdc_n=0)
    gen = torch.Generator(device=device)

    def sample_fn(n: int) -> torch.Tensor:
        with torch.no_grad():
            return generator(torch.randn(n, args.z_dim, device=device, generator=gen))

    base = {"bench": "fid", "device": device_name(device), "model": args.model, "width": args.width,
            "n": args.n, "batch": args.batch, "weights": kind, "torch": torch.__version__}  # fmt: skip
    for repeat in range(args.repeats):  # the first includes warm-up (cuDNN autotuning, allocations)
        gen.manual_seed(0)
        synchronize(device)
        start = time.perf_counter()
        features, logits = extract(extractor, generated_batches(sample_fn, args.n, args.batch), device)
        synchronize(device)
        extracted = time.perf_counter()
        result = measure(features, logits, reference, rule, device)
        done = time.perf_counter()
        with full_fp32():  # what score() adds under the presets, in the precision it uses there
            prdc(prdc_reals(reference.features, PRDC_MAX), features[:PRDC_MAX], device)
        synchronize(device)
        with_prdc = time.perf_counter()
        emit(
            base | {
                "repeat": repeat,
                "seconds_total": round(done - start, 3),
                "seconds_generate_and_features": round(extracted - start, 3),
                "seconds_statistics": round(done - extracted, 3),
                "seconds_prdc": round(with_prdc - done, 3),
                "prdc_features": f"{len(reference.features)} real vs {len(features)} generated",
                "feature_images_per_s": round(args.n / (extracted - start), 1),
                "peak_gpu_mib": peak_mib(device),
                "fid_vs_dummy_reference": round(result["fid"], 3),
            },
            args.out,
        )  # fmt: skip
    if args.prdc_n:
        emit(base | bench_prdc(args.prdc_n, device), args.out)


def bench_prdc(n: int, device: torch.device) -> dict[str, Any]:
    """Precision/recall/density/coverage of n x n random 2048-d pool-like features (>= 0): seconds, and the
    memory its distance blocks and features take."""
    from sngan.metrics import prdc as prdc_module

    rng = np.random.default_rng(1)
    real, fake = (np.abs(rng.normal(size=(n, 2048))).astype(np.float32) for _ in range(2))
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    synchronize(device)
    start = time.perf_counter()
    with full_fp32():  # as score() runs it: float32 distances, not TF32's
        prdc(real, fake, device)
    synchronize(device)
    block_rows = prdc_module.block_rows(n)
    return {
        "prdc_n": n,
        "seconds_prdc_n_x_n": round(time.perf_counter() - start, 3),
        "prdc_blocks_mib": round(3 * min(block_rows, n) * n * 4 / 2**20, 1),  # distances and two temporaries
        "prdc_features_mib": round(2 * n * 2048 * 4 / 2**20, 1),
        "peak_gpu_mib": peak_mib(device),
    }


def bench_monitor(args: argparse.Namespace) -> None:
    """Time of one monitoring pass against a training step, and its share at the default interval."""
    from sngan.models import MODELS
    from sngan.training.losses import LOSSES
    from sngan.training.monitoring import Monitor
    from sngan.training.spectral import grad_norm
    from sngan.training.step import Recipe, d_step, g_step
    from sngan.training.tracking import Tracker

    device = resolve_device(args.device)
    torch.manual_seed(0)
    g, d = build_models(args.model, args.z_dim, args.width)
    g, d = g.to(device), d.to(device)
    opt_g = torch.optim.Adam(g.parameters(), 2e-4, betas=(0.0, 0.9))
    opt_d = torch.optim.Adam(d.parameters(), 2e-4, betas=(0.0, 0.9))
    res = MODELS.get(args.model).resolution
    real = torch.rand(args.batch_d, 3, res, res, device=device) * 2 - 1
    how = Recipe(LOSSES.get("hinge"), args.z_dim)

    def step() -> None:
        for _ in range(args.n_dis):
            d_step(g, d, opt_d, real, None, how)
        g_step(g, d, opt_g, args.batch_g, device, how)

    step()
    synchronize(device)
    start = time.perf_counter()
    for _ in range(args.steps):
        step()
    synchronize(device)
    per_step = (time.perf_counter() - start) / args.steps
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        tracker = Tracker(Path(tmp))
        monitor = Monitor.create(d, MODELS.get(args.model).lipschitz_chain, real[:64])
        fixed_z = torch.randn(64, args.z_dim, device=device)

        def log(step: int) -> None:  # as the loop does: the gradient norms, then the rest
            monitor.log(g, d, fixed_z, tracker, step, None, grad_norm("d", d) | grad_norm("g", g))

        log(0)  # warm-up
        synchronize(device)
        start = time.perf_counter()
        for i in range(3):
            log(i + 1)
        synchronize(device)
        per_monitor = (time.perf_counter() - start) / 3
        tracker.close()
    emit(
        {"bench": "monitor", "device": device_name(device), "model": args.model, "width": args.width,
         "batch_d": args.batch_d, "batch_g": args.batch_g, "n_dis": args.n_dis,
         "ms_per_step": round(per_step * 1e3, 2), "ms_per_monitor": round(per_monitor * 1e3, 2),
         "monitor_every": args.every, "share_of_training": round(per_monitor / (args.every * per_step), 5)},
        args.out,
    )  # fmt: skip


# (name, precision, tf32, compile); tf32 None: auto (on where the GPU has it). The first two are the
# issue's targets, so they are measured first.
SETTINGS: dict[str, tuple[str, bool | None, str]] = {
    "bf16-max": ("bf16", None, "max"),
    "fp32-tf32": ("fp32", True, "none"),
    "fp32": ("fp32", False, "none"),
    "fp32-tf32-default": ("fp32", True, "default"),
    "bf16": ("bf16", None, "none"),
    "bf16-default": ("bf16", None, "default"),
    "fp32-tf32-max": ("fp32", True, "max"),
    "fp32-default": ("fp32", False, "default"),
}
CPU_SETTINGS = ("fp32", "bf16", "fp32-default")  # TF32 and CUDA graphs do not exist there
MODEL_ORDER = ("resnet32", "cnn32", "resnet48", "cnn48")


def train_config(model: str, name: str, device: str, overrides: list[str]) -> Any:
    from hydra import compose, initialize_config_module

    from sngan.cli.settings import check_train

    precision, tf32, mode = SETTINGS[name]
    with initialize_config_module(config_module="sngan.configs", version_base="1.3"):
        raw = compose(config_name="train", overrides=[
            f"model={model}", "dataset=synthetic", "metrics=none", f"device={device}", "train.n_dis=5",
            "train.batch_size_d=64", "train.batch_size_g=128", f"train.precision={precision}",
            f"train.tf32={'null' if tf32 is None else str(tf32).lower()}", f"train.compile={mode}", *overrides,
        ])  # fmt: skip
    return check_train(raw)


def timed(fn: Any, n: int, device: torch.device) -> float:
    """Seconds per call of ``fn`` over n calls, after the device is idle."""
    synchronize(device)
    start = time.perf_counter()
    for _ in range(n):
        fn()
    synchronize(device)
    return (time.perf_counter() - start) / n


def prepare(
    model: str, name: str, device_name_: str, width: float, images: int, overrides: tuple[str, ...] = ()
) -> tuple[Any, ...]:
    """A run of ``model`` under setting ``name`` as training builds it: (cfg, device, speed, notes, run, step),
    ``step()`` one generator iteration (raising on a non-finite update)."""
    from sngan.cli.build import build_run, iteration_of
    from sngan.data import make_synthetic
    from sngan.training.guard import StepGuard
    from sngan.training.iteration import generator_iteration
    from sngan.training.speed import resolve, set_backends
    from sngan.training.wrappers import accelerate
    from sngan.utils.distributed import Dist

    cfg = train_config(model, name, device_name_, [f"model.width={width}", *overrides])
    device = resolve_device(cfg.device)
    data = make_synthetic(images, cfg.dataset.resolution)
    t = cfg.train
    speed, notes = resolve(device, t.precision, t.tf32, t.compile, t.channels_last, "auto", data.images.nbytes)
    set_backends(speed, device)
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    run = build_run(cfg, data, device, Dist(), speed)
    accelerate(run, speed)  # a fresh dynamo cache for each setting
    guard = StepGuard(run) if cfg.train.on_nonfinite == "stop" else None  # as the loop keeps one for the run
    iteration = iteration_of(cfg)

    def step() -> None:
        failed = generator_iteration(run, iteration, speed, guard=guard).failed
        if failed is not None:
            raise RuntimeError(f"a non-finite update in the benchmark: {failed}")

    return cfg, device, speed, notes, run, step


def measure_setting(model: str, name: str, args: argparse.Namespace) -> dict[str, Any]:
    from sngan.training.losses import LOSSES
    from sngan.training.speed import cudagraph_skips
    from sngan.training.step import Recipe, d_step, g_step

    cfg, device, speed, notes, run, step = prepare(model, name, args.device, args.width, args.images)
    skips = cudagraph_skips()  # after accelerate's dynamo reset; nothing is compiled before the first step
    t = cfg.train

    started = time.perf_counter()
    for _ in range(args.warmup):  # compilation, CUDA-graph recording, cuDNN autotuning
        step()
    synchronize(device)
    warmup_s = time.perf_counter() - started
    per_step = timed(step, args.steps, device)
    how = Recipe(LOSSES.get(cfg.loss.name), cfg.model.z_dim, speed=speed)
    g_update, g_read, d_update, d_read = run.callables()
    n = max(1, args.steps // 2)
    per_d = timed(lambda: d_step(g_read, d_update, run.opt_d, run.sampler.next(64, device)[0], None, how),
                  n * t.n_dis, device)  # fmt: skip
    per_g = timed(lambda: g_step(g_update, d_read, run.opt_g, 128, device, how), n, device)
    return {
        "bench": "train", "model": model, "width": args.width, "setting": name, **speed.as_dict(),
        "device": device_name(device), "torch": torch.__version__, "batch_d": 64, "batch_g": 128, "n_dis": 5,
        "g_iters_per_s": round(1.0 / per_step, 2), "ms_per_step": round(per_step * 1e3, 2),
        "ms_per_d_update": round(per_d * 1e3, 2), "ms_per_g_update": round(per_g * 1e3, 2),
        "peak_gpu_mib": peak_mib(device), "warmup_s": round(warmup_s, 1), "steps": args.steps,
        "cudagraph_skips": cudagraph_skips() - skips,  # graphs compile=max ran without CUDA graphs
        "notes": notes,
    }  # fmt: skip


def bench_train(args: argparse.Namespace) -> None:
    device = resolve_device(args.device)
    names = args.settings.split(",") if args.settings else (list(SETTINGS) if device.type == "cuda" else CPU_SETTINGS)
    unknown = [n for n in names if n not in SETTINGS]
    if unknown:
        sys.exit(f"error: unknown setting(s) {unknown}; choose from {', '.join(SETTINGS)}")
    for model in args.models.split(","):
        for name in names:
            try:
                emit(measure_setting(model, name, args), args.out)
            except Exception as exc:  # a setting this machine cannot run: say so, measure the rest
                emit({"bench": "train", "model": model, "setting": name, "error": f"{type(exc).__name__}: {exc}"},
                     args.out)  # fmt: skip
    if args.command:
        import subprocess

        start = time.perf_counter()
        done = subprocess.run(args.command, shell=True, check=False)
        seconds = time.perf_counter() - start
        rate = round(args.command_iters / seconds, 2) if args.command_iters else None
        emit({"bench": "command", "command": args.command, "returncode": done.returncode,
              "seconds": round(seconds, 1), "iters": args.command_iters, "g_iters_per_s": rate}, args.out)  # fmt: skip


def bench_methods(args: argparse.Namespace) -> None:
    """Seconds per 100 generator updates of each method (the paper's Figure 10: n_dis 5, one batch size)."""
    device = resolve_device(args.device)
    setting = args.setting or ("fp32-tf32" if device.type == "cuda" else "fp32")  # eager, as the paper's Chainer
    if setting not in SETTINGS:
        sys.exit(f"error: unknown setting {setting}; choose from {', '.join(SETTINGS)}")
    args.out.mkdir(parents=True, exist_ok=True)
    records = []
    for method in args.methods.split(","):
        loss = "wasserstein" if method.startswith("wgan_gp") else "nonsaturating"  # the paper's pairing
        overrides = (f"constraint={method}", f"loss={loss}", "optim=setting_a", "train.batch_size_g=64")
        cfg, device, _, notes, _, step = prepare(args.model, setting, args.device, args.width, args.images, overrides)
        for _ in range(args.warmup):
            step()
        per_step = timed(step, args.steps, device)
        records.append({
            "bench": "methods", "method": method, "loss": loss, "model": args.model, "width": args.width,
            "setting": setting, "device": device_name(device), "torch": torch.__version__, "n_dis": cfg.train.n_dis,
            "batch_d": cfg.train.batch_size_d, "batch_g": cfg.train.batch_size_g, "steps": args.steps,
            "seconds_per_100_g_updates": round(per_step * 100, 3), "notes": notes,
        })  # fmt: skip
        emit(records[-1], args.out / "fig10_time_per_100_updates.jsonl")
    print(f"Wrote {', '.join(map(str, write_fig10(records, args.out)))}.", file=sys.stderr)


def tensors_in(value: Any) -> list[torch.Tensor]:
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, dict):
        return [t for v in value.values() for t in tensors_in(v)]
    if isinstance(value, (list, tuple)):
        return [t for v in value for t in tensors_in(v)]
    return []


def bench_snapshot(args: argparse.Namespace) -> None:
    """What on_nonfinite=stop copies before every step, per model: the whole state (``state.snapshot``, what
    it copied until issue 38 and what the compile trial still copies) against ``guard.StepGuard`` (only what a
    failed step can change); tensors, MiB and milliseconds a copy, after two steps (the optimizers' state)."""
    from sngan.training.guard import StepGuard
    from sngan.training.state import snapshot

    for model in args.models.split(","):
        small = ("train.batch_size_d=4", "train.batch_size_g=4", "train.n_dis=1")  # the state, not the step
        cfg, device, _, _, run, step = prepare(model, "fp32", args.device, 1.0, 64, small)
        step(), step()
        guard = StepGuard(run)
        guard.keep()
        whole = tensors_in(snapshot(run))
        for name, tensors, copy in (("snapshot (before)", whole, partial(snapshot, run)),
                                    ("StepGuard (after)", guard.kept, guard.keep)):  # fmt: skip
            emit({
                "bench": "snapshot", "model": model, "what": name, "tensors": len(tensors),
                "mib": round(sum(t.numel() * t.element_size() for t in tensors) / 2**20, 2),
                "ms": round(timed(copy, args.repeats, device) * 1000, 3), "ema": cfg.train.ema_decay is not None,
                "device": device_name(device), "torch": torch.__version__,
            }, args.out)  # fmt: skip


def write_fig10(records: list[dict[str, Any]], out: Path) -> list[Path]:
    """The paper's Figure 10: seconds per 100 generator updates of each method, a bar each; PNG and CSV in
    ``out``. The paper gives its values only as bars, and in its text SN taking about 110-120% of WN's time
    on CIFAR-10 (App. C.2): our ratio is in the title."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from sngan.cli.figures import save_figure, write_csv
    from sngan.metrics.published import METHODS

    rows = [{k: r[k] for k in ("method", "loss", "seconds_per_100_g_updates", "n_dis", "batch_d", "batch_g",
                               "model", "width", "setting", "device", "steps")} for r in records]  # fmt: skip
    seconds = {r["method"]: r["seconds_per_100_g_updates"] for r in rows}
    fig, ax = plt.subplots(figsize=(max(6.0, 1.3 * len(rows) + 2), 4.5))
    labels = ["Vanilla" if r["method"] == "none" else METHODS.get(r["method"], r["method"]) for r in rows]
    bars = ax.bar(labels, [r["seconds_per_100_g_updates"] for r in rows], color="tab:blue", label="measured here")
    ax.bar_label(bars, fmt="%.3g", fontsize=8)
    ax.set_xlabel("method of D")
    ax.set_ylabel("seconds per 100 generator updates")
    first = rows[0] if rows else {}
    ratio = ""
    if {"sn", "wn"} <= set(seconds):
        ratio = f"; SN / WN {seconds['sn'] / seconds['wn']:.0%} (paper: about 110-120%)"
    what = f"{first.get('model')} x{first.get('width')}, n_dis {first.get('n_dis')}"
    batches = f"batches {first.get('batch_d')}/{first.get('batch_g')}"
    ax.set_title(f"Figure 10: {what}, {batches}, {first.get('device')}{ratio}", fontsize=9)
    ax.legend(fontsize=8)
    png, csv_path = out / "fig10_time_per_100_updates.png", out / "fig10_time_per_100_updates.csv"
    save_figure(fig, png)
    write_csv(csv_path, rows)
    return [png, csv_path]


def bench_quality(args: argparse.Namespace) -> None:
    """Modes covered after 2,000 quick-start steps per setting and seed, and each setting's largest
    difference from fp32 eager on the same seed."""
    import tempfile

    from hydra import compose, initialize_config_module

    from sngan.cli.settings import check_train
    from sngan.cli.start import start
    from sngan.config import to_container

    device = resolve_device(args.device)
    names = args.settings.split(",") if args.settings else (
        ["fp32", "bf16", "fp32-default", "bf16-max"] if device.type == "cuda" else list(CPU_SETTINGS))  # fmt: skip
    modes: dict[tuple[str, int], float] = {}
    for seed in args.seeds:
        for name in names:
            precision, tf32, mode = SETTINGS[name]
            overrides = ["experiment=quickstart", f"device={args.device}", f"seed={seed}", f"train.steps={args.steps}",
                         f"train.eval_every={args.steps}", "train.monitor_every=null", f"train.precision={precision}",
                         f"train.tf32={'null' if tf32 is None else str(tf32).lower()}",
                         f"train.compile={mode}"]  # fmt: skip
            with initialize_config_module(config_module="sngan.configs", version_base="1.3"):
                raw = compose(config_name="train", overrides=overrides)
            with tempfile.TemporaryDirectory() as tmp:
                began = time.perf_counter()
                result = start(check_train(raw), to_container(raw), Path(tmp))
            modes[name, seed] = result["synthetic/modes_covered"]
            emit({"bench": "quality", "setting": name, "seed": seed, "steps": args.steps,
                  "modes_covered": modes[name, seed], "quality": round(result["synthetic/quality"], 4),
                  "seconds": round(time.perf_counter() - began, 1), "device": device_name(device)},
                 args.out)  # fmt: skip
    for name in names[1:]:
        gap = max(abs(modes[name, s] - modes[names[0], s]) for s in args.seeds)
        emit({"bench": "quality_summary", "setting": name, "versus": names[0], "largest_mode_gap": gap,
              "within_one_mode": gap <= 1}, args.out)  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="bench", required=True)
    fid = sub.add_parser("fid", help="time FID of n samples, generation included")
    fid.add_argument("--n", type=int, default=10_000)
    fid.add_argument("--batch", type=int, default=500)
    fid.add_argument("--model", default="resnet32")
    fid.add_argument("--width", type=float, default=1.0)
    fid.add_argument("--z-dim", type=int, default=128)
    fid.add_argument("--device", default="auto")
    fid.add_argument("--weights", default=None, help="Inception weights file (default: $TORCH_HOME's)")
    fid.add_argument("--repeats", type=int, default=2)
    fid.add_argument("--offline", action="store_true", help="never try to download the Inception weights")
    fid.add_argument("--prdc-n", type=int, default=10_000,
                     help="also time precision/recall/density/coverage of N x N features (0: not)")  # fmt: skip
    fid.add_argument("--out", type=Path, default=None, help="also append the JSON lines to this file")
    mon = sub.add_parser("monitor", help="cost of train.monitor_every against training steps")
    mon.add_argument("--model", default="resnet32")
    mon.add_argument("--width", type=float, default=1.0)
    mon.add_argument("--z-dim", type=int, default=128)
    mon.add_argument("--batch-d", type=int, default=64)
    mon.add_argument("--batch-g", type=int, default=128)
    mon.add_argument("--n-dis", type=int, default=5)
    mon.add_argument("--steps", type=int, default=5)
    mon.add_argument("--every", type=int, default=1000, help="the monitoring interval (train.monitor_every)")
    mon.add_argument("--device", default="auto")
    mon.add_argument("--out", type=Path, default=None)
    tr = sub.add_parser("train", help="training throughput per model and precision/compile setting")
    tr.add_argument("--models", default=",".join(MODEL_ORDER))
    tr.add_argument("--settings", default=None, help=f"comma-separated, from: {', '.join(SETTINGS)}")
    tr.add_argument("--width", type=float, default=1.0)
    tr.add_argument("--steps", type=int, default=50, help="timed generator iterations per setting")
    tr.add_argument("--warmup", type=int, default=10, help="untimed iterations first (compilation, graphs)")
    tr.add_argument("--images", type=int, default=10_000, help="synthetic training images (held on the device)")
    tr.add_argument("--device", default="auto")
    tr.add_argument("--command", default=None, help="also time this shell command (another trainer)")
    tr.add_argument("--command-iters", type=int, default=None, help="generator iterations the command runs")
    tr.add_argument("--out", type=Path, default=None)
    qu = sub.add_parser("quality", help="mode coverage on synthetic data per setting, against fp32 eager")
    qu.add_argument("--settings", default=None, help="comma-separated; the first is the reference")
    qu.add_argument("--steps", type=int, default=2000)
    qu.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    qu.add_argument("--device", default="auto")
    qu.add_argument("--out", type=Path, default=None)
    me = sub.add_parser("methods", help="seconds per 100 generator updates per method (the paper's Figure 10)")
    me.add_argument("--methods", default="wgan_gp,wn,sn,none", help="constraint options, comma-separated")
    me.add_argument("--model", default="cnn32")
    me.add_argument("--width", type=float, default=1.0)
    me.add_argument("--setting", default=None, help="precision/compile setting (default: fp32-tf32 on CUDA, else fp32)")
    me.add_argument("--steps", type=int, default=100, help="timed generator updates per method")
    me.add_argument("--warmup", type=int, default=5)
    me.add_argument("--images", type=int, default=10_000, help="synthetic training images (held on the device)")
    me.add_argument("--device", default="auto")
    me.add_argument("--out", type=Path, default=Path("fig10"), help="folder for the PNG, CSV and JSON lines")
    sn = sub.add_parser("snapshot", help="what on_nonfinite=stop copies before each step, before and after issue 38")
    sn.add_argument("--models", default="resnet32,cnn32")
    sn.add_argument("--repeats", type=int, default=20)
    sn.add_argument("--device", default="auto")
    sn.add_argument("--out", type=Path, default=None, help="also append the JSON lines to this file")
    args = parser.parse_args(argv)
    bench = {"train": bench_train, "quality": bench_quality, "fid": bench_fid, "monitor": bench_monitor,
             "methods": bench_methods, "snapshot": bench_snapshot}[args.bench]  # fmt: skip
    run_or_exit(lambda: bench(args))  # as the commands do: freed memory kept, a user error in one paragraph


if __name__ == "__main__":
    main()
