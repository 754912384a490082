"""The quick start's outcome over seeds x threads x CPU kernels: the table behind the README's claim.

    python scripts/quickstart_seeds.py                                   # seeds 0-9, 1 and 2 threads, both kernels
    python scripts/quickstart_seeds.py --seeds 0 1 --threads 1 --kernels default
    python scripts/quickstart_seeds.py --jobs 2 --threads 1              # two one-thread runs side by side
    python scripts/quickstart_seeds.py model.z_dim=8 --seeds 0 1         # Hydra overrides go last

Each run is the real command line (``python -m sngan.train experiment=quickstart seed=S``) in a
temporary folder, with ``OMP_NUM_THREADS`` set to the thread count. ``--kernels avx2`` sets
``ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2``: on an AVX-512 CPU the two together reproduce an
AVX2-only CPU's rounding (the first alone does not: oneDNN's convolutions choose their own
instructions). Eager runs only: torch.compile's CPU code segfaults under that emulation.

Prints one line per run as it ends, then the worst case of each (threads, kernels) cell and of all
runs; ``--json FILE`` also writes every row, and ``--report FILE...`` prints saved rows as
docs/quickstart.md's table. Judged as the quick start judges itself: the EMA generator's quality and
modes where the run keeps an EMA, else the generator's. Rows are printed in the order runs finish;
``--jobs`` above 1 shares the cores, so its seconds are not the README command's.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

AVX2 = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"}
QUALITY, MODES = 0.8, 8  # the quick start's promise (README)


def run(seed: int, threads: int, kernels: str, extra: list[str]) -> dict[str, float | int | str]:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)} | (AVX2 if kernels == "avx2" else {})
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        cmd = [sys.executable, "-m", "sngan.train", "experiment=quickstart", f"seed={seed}", *extra]
        proc = subprocess.run(cmd, cwd=tmp, capture_output=True, text=True, env=env)
        if proc.returncode != 0:
            raise SystemExit(f"seed {seed}, {threads} thread(s), {kernels} kernels failed:\n{proc.stderr[-3000:]}")
        (metrics,) = Path(tmp).glob("outputs/quickstart/*/metrics.jsonl")
        last = json.loads(metrics.read_text().splitlines()[-1])
    prefix = "ema/" if "ema/synthetic/quality" in last else ""
    return {
        "seed": seed,
        "threads": threads,
        "kernels": kernels,
        "judged": prefix.rstrip("/") or "G",
        "quality": last[f"{prefix}synthetic/quality"],
        "modes": int(last[f"{prefix}synthetic/modes_covered"]),
        "g_quality": last["synthetic/quality"],
        "g_modes": int(last["synthetic/modes_covered"]),
        "seconds": round(time.perf_counter() - start, 1),
    }


def line(r: dict) -> str:
    passed = r["quality"] >= QUALITY and r["modes"] >= MODES
    return (
        f"seed {r['seed']}  threads {r['threads']}  kernels {r['kernels']:<7}  {r['judged']:>3}: quality "
        f"{r['quality']:.3f}, modes {r['modes']:>2}/10  (G: {r['g_quality']:.3f}, {r['g_modes']:>2})  "
        f"{r['seconds']:.0f} s  {'ok' if passed else 'FAIL'}"
    )


def worst(rows: list[dict]) -> str:
    ok = sum(r["quality"] >= QUALITY and r["modes"] >= MODES for r in rows)
    mean = sum(r["quality"] for r in rows) / len(rows)
    return (
        f"worst quality {min(r['quality'] for r in rows):.3f}, fewest modes {min(r['modes'] for r in rows)}, "
        f"mean quality {mean:.3f}, longest {max(r['seconds'] for r in rows):.0f} s; "
        f"{ok}/{len(rows)} reach quality >= {QUALITY} with >= {MODES} of 10 modes"
    )


KERNELS = {"default": "default (AVX-512 here)", "avx2": "AVX2"}


def markdown(rows: list[dict]) -> str:
    """The table for docs/quickstart.md: one row per seed x threads x kernels, sorted."""
    out = ["| seed | threads | kernels | EMA quality / modes | G quality / modes | seconds |", "|---" * 6 + "|"]
    for r in sorted(rows, key=lambda r: (r["seed"], r["threads"], r["kernels"] != "default")):
        out.append(
            f"| {r['seed']} | {r['threads']} | {KERNELS[r['kernels']]} | {r['quality']:.3f} / {r['modes']} | "
            f"{r['g_quality']:.3f} / {r['g_modes']} | {r['seconds']:.0f} |"
        )
    return "\n".join(out)


def summary(rows: list[dict], threads: list[int], kernels: list[str]) -> None:
    for t, k in itertools.product(threads, kernels):
        cell = [r for r in rows if r["threads"] == t and r["kernels"] == k]
        if cell:
            print(f"{t} thread(s), {k} kernels: {worst(cell)}")
    print(f"all {len(rows)} runs: {worst(rows)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=list(range(10)))
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--kernels", nargs="+", choices=["default", "avx2"], default=["default", "avx2"])
    parser.add_argument("--jobs", type=int, default=1, help="runs at once (each with its own threads)")
    parser.add_argument("--json", type=Path, help="also write every row to this file")
    parser.add_argument(
        "--report", type=Path, nargs="+", metavar="JSON",
        help="run nothing: print the markdown table and the worst cases of rows written by --json",
    )  # fmt: skip
    parser.add_argument("overrides", nargs="*", help="extra Hydra overrides")
    args = parser.parse_args()
    if args.report:
        rows = [row for path in args.report for row in json.loads(path.read_text())]
        print(markdown(rows) + "\n")
        summary(rows, sorted({r["threads"] for r in rows}), ["default", "avx2"])
        return
    cells = list(itertools.product(args.seeds, args.threads, args.kernels))
    rows = []
    with ThreadPoolExecutor(args.jobs) as pool:
        futures = [pool.submit(run, seed, threads, kernels, args.overrides) for seed, threads, kernels in cells]
        for future in futures:
            rows.append(future.result())
            print(line(rows[-1]), flush=True)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1) + "\n")
    print()
    summary(rows, args.threads, args.kernels)


if __name__ == "__main__":
    main()
