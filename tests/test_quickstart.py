"""The quick start, run once per session (see conftest.py): it must leave
checkpoints, event files and sample grids, and at its fixed final step its EMA
generator (the one the quick start is judged by) must cover at least 8 of the 10
synthetic modes with quality at least 0.8.

Margin: over seeds 0-9 x 1 and 2 threads x AVX2 and AVX-512 kernels every one of the
40 runs clears both thresholds (worst 0.821 / 8 modes; docs/quickstart.md, made by
scripts/quickstart_seeds.py). The test runs seed 6, the seed whose worst cell is
furthest from them (quality >= 0.863 and >= 9 modes in all four thread x kernel
cells), so rounding on another CPU does not decide it. The README's claim, every
seed, is the table's; this test guards the setting against a regression."""

import pytest

from sngan.utils import checkpoint as ckpt

pytestmark = pytest.mark.slow


def test_quickstart_writes_checkpoints_events_and_grids(quickstart_run):
    run_dir, _ = quickstart_run
    latest = ckpt.find_latest(run_dir)
    assert latest is not None and ckpt.load(latest)["step"] == ckpt.load(latest)["config"]["train"]["steps"]
    assert list((run_dir / "tb").glob("events.out.tfevents.*"))
    assert len(list((run_dir / "samples").glob("step_*.png"))) >= 2
    assert len(list((run_dir / "samples").glob("ema_step_*.png"))) >= 2


def test_quickstart_covers_at_least_8_of_10_modes_with_quality_0_8(quickstart_run):
    _, result = quickstart_run
    assert result["ema/synthetic/quality"] >= 0.8, result
    assert result["ema/synthetic/modes_covered"] >= 8, result
    assert result["synthetic/quality"] >= 0.5, result  # the raw generator learned too, EMA or not
