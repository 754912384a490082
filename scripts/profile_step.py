"""Where a training step's time goes on the host: one profiler trace of a few generator iterations.

    python scripts/profile_step.py --setting bf16-max --out OUT/profile.jsonl --trace OUT/trace.json
    python scripts/profile_step.py --device cpu --setting fp32 --width 0.125 --steps 3

Builds the trainer's own step (``sngan.training.iteration.generator_iteration``, resnet32 at the paper's batches, data
on the device) as ``scripts/benchmark.py train`` does, warms it up (compilation, CUDA-graph recording,
cuDNN timing), then prints one JSON line: the host's milliseconds to issue a step (the calls return
before the GPU is done: a launch-bound trainer has host time close to the step's wall time), the wall
milliseconds a step, and per step the calls that wait for the device (``*Synchronize``, copies to the
host: ``aten::_local_scalar_dense`` is ``.item()``/``.tolist()``) and the kernel and graph launches.
``--trace`` writes the Chrome trace (chrome://tracing, Perfetto) of the profiled steps.
"""

from __future__ import annotations

import argparse
import time
from collections import Counter
from pathlib import Path

import torch
from benchmark import SETTINGS, emit, prepare, synchronize

from sngan.cli.errors import run_or_exit
from sngan.cli.provenance import device_name

WAITS = ("cudaStreamSynchronize", "cudaDeviceSynchronize", "cudaEventSynchronize", "cudaMemcpy",
         "aten::_local_scalar_dense")  # fmt: skip
LAUNCHES = ("cudaLaunchKernel", "cuLaunchKernel", "cudaGraphLaunch")


def profile(args: argparse.Namespace) -> None:
    if args.setting not in SETTINGS:
        raise SystemExit(f"error: unknown setting {args.setting!r}; choose from {', '.join(SETTINGS)}")
    _, device, speed, notes, _, step = prepare(args.model, args.setting, args.device, args.width, args.images)
    for _ in range(args.warmup):
        step()
    synchronize(device)
    host, began = 0.0, time.perf_counter()
    for _ in range(args.steps):  # the host's share: the time to issue each step
        issued = time.perf_counter()
        step()
        host += time.perf_counter() - issued
    synchronize(device)
    wall = time.perf_counter() - began
    activities = [torch.profiler.ProfilerActivity.CPU]
    if device.type == "cuda":
        activities.append(torch.profiler.ProfilerActivity.CUDA)
    with torch.profiler.profile(activities=activities) as prof:
        for _ in range(args.steps):
            step()
        synchronize(device)
    counts = Counter(event.name for event in prof.events())
    per_step = lambda names: {n: round(counts[n] / args.steps, 2) for n in names if counts[n]}  # noqa: E731
    if args.trace:
        args.trace.parent.mkdir(parents=True, exist_ok=True)
        prof.export_chrome_trace(str(args.trace))
    emit(
        {"bench": "profile", "model": args.model, "setting": args.setting, **speed.as_dict(), "width": args.width,
         "device": device_name(device), "torch": torch.__version__, "steps": args.steps,
         "host_ms_per_step": round(host / args.steps * 1e3, 2), "ms_per_step": round(wall / args.steps * 1e3, 2),
         "waits_per_step": per_step(WAITS), "launches_per_step": per_step(LAUNCHES),
         "trace": str(args.trace) if args.trace else None, "notes": notes},
        args.out,
    )  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="resnet32")
    parser.add_argument("--setting", default="fp32-tf32-max", help=f"one of: {', '.join(SETTINGS)}")
    parser.add_argument("--width", type=float, default=1.0)
    parser.add_argument("--steps", type=int, default=5, help="generator iterations timed, then profiled")
    parser.add_argument("--warmup", type=int, default=5, help="untimed iterations first (compilation, graphs)")
    parser.add_argument("--images", type=int, default=10_000)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--trace", type=Path, default=None, help="write the Chrome trace here")
    parser.add_argument("--out", type=Path, default=None, help="also append the JSON line to this file")
    args = parser.parse_args(argv)
    run_or_exit(lambda: profile(args))


if __name__ == "__main__":
    main()
