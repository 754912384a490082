"""Run the quick start for several seeds and report quality and mode coverage.

    python scripts/quickstart_seeds.py --seeds 0 1 2
    python scripts/quickstart_seeds.py model.z_dim=128 --seeds 0 1   # overrides first

Each run is the real command line (``python -m sngan.train experiment=quickstart
seed=S``) in a temporary folder; the script prints one line per seed (with
wall time) and a summary, and writes nothing else.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def run(seed: int, extra: list[str]) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        cmd = [sys.executable, "-m", "sngan.train", "experiment=quickstart", f"seed={seed}", *extra]
        proc = subprocess.run(cmd, cwd=tmp, capture_output=True, text=True)
        if proc.returncode != 0:
            raise SystemExit(f"seed {seed} failed:\n{proc.stderr[-3000:]}")
        (metrics,) = Path(tmp).glob("outputs/quickstart/*/metrics.jsonl")
        last = json.loads(metrics.read_text().splitlines()[-1])
        last["wall_s"] = time.perf_counter() - start
        return last


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("overrides", nargs="*", help="extra Hydra overrides")
    args = parser.parse_args()
    rows = []
    for seed in args.seeds:
        r = run(seed, args.overrides)
        rows.append(r)
        print(
            f"seed {seed}: quality {r['synthetic/quality']:.3f}, modes covered "
            f"{int(r['synthetic/modes_covered'])}/10, median distance {r['synthetic/median_distance']:.3f}, "
            f"wall {r['wall_s']:.0f} s",
            flush=True,
        )
    ok = sum(r["synthetic/quality"] >= 0.8 and r["synthetic/modes_covered"] >= 8 for r in rows)
    print(f"{ok}/{len(rows)} seeds reach quality >= 0.8 with >= 8 of 10 modes")


if __name__ == "__main__":
    main()
