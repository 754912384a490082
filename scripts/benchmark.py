"""Benchmarks that print figures (never timed tests). One JSON line per measurement, flushed as
it goes, so a time-limited run keeps what it measured.

    python scripts/benchmark.py fid                       # FID of 10,000 samples, generation included
    python scripts/benchmark.py fid --n 2000 --device cpu --model cnn32 --width 0.25
    python scripts/benchmark.py fid --out bench.jsonl
    python scripts/benchmark.py monitor --model resnet32 --device cpu   # cost of spectral monitoring

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
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sngan.metrics.evaluate import MetricRule, extract, generated_batches, score
from sngan.metrics.fid import ReferenceStats
from sngan.metrics.inception import InceptionError, InceptionFeatures, random_state_dict, resolve_weights
from sngan.models import build_models
from sngan.provenance import device_name, resolve_device


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


def load_inception(weights: str | None) -> tuple[InceptionFeatures, str]:
    try:
        found = resolve_weights(weights, download=weights is None)
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
    extractor, kind = load_inception(args.weights)
    extractor = extractor.to(device)
    rng = np.random.default_rng(0)
    reference = ReferenceStats(np.zeros(2048), np.eye(2048), rng.normal(size=(2000, 2048)).astype(np.float32))
    rule = MetricRule("benchmark", args.n, "train", None)
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
        result = score(features, logits, reference, rule, device)
        done = time.perf_counter()
        emit(
            base | {
                "repeat": repeat,
                "seconds_total": round(done - start, 3),
                "seconds_generate_and_features": round(extracted - start, 3),
                "seconds_statistics": round(done - extracted, 3),
                "feature_images_per_s": round(args.n / (extracted - start), 1),
                "peak_gpu_mib": peak_mib(device),
                "fid_vs_dummy_reference": round(result["fid"], 3),
            },
            args.out,
        )  # fmt: skip


def bench_monitor(args: argparse.Namespace) -> None:
    """Time of one monitoring pass against a training step, and its share at the default interval."""
    from sngan.losses import LOSSES
    from sngan.models import MODELS
    from sngan.monitoring import Monitor
    from sngan.step import d_step, g_step
    from sngan.tracking import Tracker

    device = resolve_device(args.device)
    torch.manual_seed(0)
    g, d = build_models(args.model, args.z_dim, args.width)
    g, d = g.to(device), d.to(device)
    opt_g = torch.optim.Adam(g.parameters(), 2e-4, betas=(0.0, 0.9))
    opt_d = torch.optim.Adam(d.parameters(), 2e-4, betas=(0.0, 0.9))
    res = MODELS.get(args.model).resolution
    real = torch.rand(args.batch_d, 3, res, res, device=device) * 2 - 1
    loss = LOSSES.get("hinge")

    def step() -> None:
        for _ in range(args.n_dis):
            d_step(g, d, opt_d, loss, real, args.z_dim)
        g_step(g, d, opt_g, loss, args.batch_g, args.z_dim, device)

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
        monitor.log(g, d, fixed_z, tracker, 0)  # warm-up
        synchronize(device)
        start = time.perf_counter()
        for i in range(3):
            monitor.log(g, d, fixed_z, tracker, i + 1)
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
    args = parser.parse_args(argv)
    if args.bench == "fid":
        bench_fid(args)
    elif args.bench == "monitor":
        bench_monitor(args)


if __name__ == "__main__":
    main()
