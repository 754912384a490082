"""train.dry_run=true (issue 24): everything is built and the plan printed (settings, parameter counts,
data size and placement, schedule, resume, reference statistics, checkpoint disk use); nothing is trained
or saved."""

from __future__ import annotations

import re

from helpers import TINY, run_training

from sngan.training.dry_run import times
from sngan.utils import checkpoint as ckpt


def test_times_counts_the_due_steps_the_last_one_included():
    assert times(500, 0, 2500) == 5 and times(25, 0, 2500) == 100
    assert times(1000, 0, 2500) == 3  # 1000, 2000 and the last
    assert times(1000, 1500, 2500) == 2 and times(1000, 2500, 2500) == 0


def test_a_dry_run_prints_the_plan_and_writes_nothing(tmp_path, capsys):
    run_dir = tmp_path / "dry"
    assert run_training(run_dir, TINY + ["train.steps=7", "train.dry_run=true"]) == {}
    out = capsys.readouterr().out
    assert out.startswith("dry run (train.dry_run=true)")
    assert re.search(r"^model     cnn32 \(width 0.125, .*\): G [\d,]+ parameters, D [\d,]+", out, re.M)
    assert re.search(r"^train:\n(  .*\n)*  steps: 7\n", out, re.M)  # the resolved settings, as YAML
    assert "synthetic, 200 images at 32x32" in out and "held on cpu" in out
    assert "resume    none: a fresh run from step 0" in out
    assert (
        "steps 0 -> 7 (7 to go); logs every 1 (7), sample grids every 2 (4), evaluations every 2 (4), "
        "checkpoints every 2 (4)" in out
    )
    assert not (run_dir / ckpt.CHECKPOINT_DIR).exists() and not (run_dir / "tb").exists()
    assert not (run_dir / "config.yaml").exists()


def test_the_disk_estimate_matches_a_real_checkpoint_and_a_resume_is_named(tmp_path, capsys):
    run_dir = tmp_path / "run"
    run_training(run_dir, TINY + ["train.steps=2"])
    real = ckpt.checkpoint_path(run_dir, 2).stat().st_size
    capsys.readouterr()
    run_training(run_dir, TINY + ["train.steps=6", "train.dry_run=true", "resume=auto"])
    out = capsys.readouterr().out
    assert f"resume    from {ckpt.checkpoint_path(run_dir, 2)} at step 2" in out
    assert "steps 2 -> 6 (4 to go)" in out
    estimate = float(out.split("disk      about ")[1].split(" MiB")[0]) * 2**20
    assert abs(estimate - real) / real < 0.1, (estimate, real)
    assert ckpt.find_latest(run_dir) == ckpt.checkpoint_path(run_dir, 2)  # nothing new saved


def test_a_fresh_dry_run_estimates_adams_moments_too(tmp_path, capsys):
    run_training(tmp_path / "dry", TINY + ["train.steps=2", "train.dry_run=true"])
    estimate = float(capsys.readouterr().out.split("disk      about ")[1].split(" MiB")[0]) * 2**20
    run_training(tmp_path / "real", TINY + ["train.steps=2"])
    real = ckpt.checkpoint_path(tmp_path / "real", 2).stat().st_size
    assert abs(estimate - real) / real < 0.1, (estimate, real)


def test_the_reference_statistics_are_described_for_every_rule_without_computing_them(tmp_path):
    from helpers import compose_cfg, validated

    from sngan.metrics.scoring import describe_reference

    stats = tmp_path / "stats"
    for rule, count in (("fid_paper", "10,000 train images"), ("fid50k_train", "all train images")):
        cfg = validated(compose_cfg(["dataset=cifar10", f"metrics={rule}", f"inception.stats_dir={stats}"]))
        said = describe_reference(cfg.metrics, cfg.inception, cfg.dataset)
        assert said.startswith(f"rule {rule}: ") and said.endswith(f"(computed at start from {count})"), said
    assert not stats.exists()
