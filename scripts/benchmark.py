"""Benchmarks that print figures (never timed tests). One JSON line per measurement, flushed as
it goes, so a time-limited run keeps what it measured.

    python scripts/benchmark.py fid                       # FID of 10,000 samples, generation included
    python scripts/benchmark.py fid --n 2000 --device cpu --model cnn32 --width 0.25
    python scripts/benchmark.py fid --out bench.jsonl

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
    args = parser.parse_args(argv)
    if args.bench == "fid":
        bench_fid(args)


if __name__ == "__main__":
    main()
