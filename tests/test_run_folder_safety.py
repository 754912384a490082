"""A run folder's history is never lost to a careless command (issue 36): a folder holding any run (best.pt
alone, metrics alone) is refused for a fresh start; every refusal and every dry run leaves the folder as it
was (.hydra/ and train.log included); a resume that would change the experiment (augmentation, EMA, other
images) is refused unless forced."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers import TINY, run_training
from PIL import Image

from sngan.utils import checkpoint as ckpt

QUIET = ["train.monitor_every=null"]


def files_of(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` (relative path -> bytes), the lock left out."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
            and p.name != "sngan.lock"}  # fmt: skip


def only_best(run_dir: Path) -> None:
    """A finished run that scored FID, its rolling checkpoints deleted: best.pt (here the last one) remains."""
    newest = ckpt.find_latest(run_dir)
    newest.rename(newest.with_name("best.pt"))
    for path in ckpt.list_checkpoints(run_dir):
        path.unlink()


def test_a_folder_holding_only_best_pt_is_refused_for_a_fresh_start_and_resume_auto_continues_it(tmp_path, capsys):
    run_training(tmp_path, TINY + ["train.steps=4", *QUIET])
    only_best(tmp_path)
    before = files_of(tmp_path)
    with pytest.raises(ckpt.CheckpointError, match=r"already holds a run \(checkpoints/best\.pt; metrics\.jsonl"):
        run_training(tmp_path, TINY + ["train.steps=4", *QUIET])
    assert files_of(tmp_path) == before  # best.pt, config.yaml, metrics.jsonl and tb/ untouched
    capsys.readouterr()
    run_training(tmp_path, TINY + ["train.steps=6", "resume=auto", *QUIET])
    err = capsys.readouterr().err
    assert "no loadable rolling checkpoint" in err and "resuming from its best.pt, saved at step 4" in err
    assert ckpt.load(ckpt.find_latest(tmp_path))["step"] == 6


def test_a_folder_holding_metrics_but_no_checkpoint_is_refused_both_ways(tmp_path):
    run_training(tmp_path, TINY + ["train.steps=2", *QUIET])
    shutil.rmtree(tmp_path / "checkpoints")
    before = files_of(tmp_path)
    with pytest.raises(
        ckpt.CheckpointError,
        match=r"already holds a run \(metrics\.jsonl \(1 row\)\)\. It has no checkpoint to continue from: start ",
    ):
        run_training(tmp_path, TINY + ["train.steps=2", *QUIET])
    with pytest.raises(ckpt.CheckpointError, match=r"holds no loadable checkpoint to resume from"):
        run_training(tmp_path, TINY + ["train.steps=4", "resume=auto", *QUIET])  # not a silent start at step 0
    assert files_of(tmp_path) == before


def test_a_dry_run_of_a_rewind_says_what_it_would_set_aside_and_moves_nothing(tmp_path, capsys):
    run_training(tmp_path, TINY + ["train.steps=6", "train.keep_checkpoints=10", *QUIET])
    before = files_of(tmp_path)
    capsys.readouterr()
    first = ckpt.checkpoint_path(tmp_path, 2)
    run_training(tmp_path, TINY + ["train.steps=8", "train.dry_run=true", f"resume={first}", *QUIET])
    out = capsys.readouterr().out
    assert f"resume    from {first} at step 2; would set aside ckpt_00000004.pt, ckpt_00000006.pt" in out
    assert files_of(tmp_path) == before and not list((tmp_path / "checkpoints").glob("abandoned_*"))
    run_training(tmp_path, TINY + ["train.steps=8", "resume=auto", *QUIET])  # continues from 6, not from 2
    assert ckpt.load(ckpt.find_latest(tmp_path))["step"] == 8 and ckpt.checkpoint_path(tmp_path, 6).is_file()


@pytest.mark.parametrize(
    "change, shown",
    [
        ("augment=diffaugment", "augment.name: 'none' -> 'diffaugment'"),
        ("train.ema_decay=null", "train.ema_decay: 0.998 -> None"),
    ],
)
def test_a_resume_that_changes_augmentation_or_the_ema_is_refused_unless_forced(tmp_path, change, shown):
    run_training(tmp_path, TINY + ["train.steps=2", *QUIET])
    before = files_of(tmp_path)
    with pytest.raises(ckpt.CheckpointError, match=f"{shown.replace('(', '[(]').replace(')', '[)]')}.*resume_force"):
        run_training(tmp_path, TINY + ["train.steps=4", "resume=auto", change, *QUIET])
    assert files_of(tmp_path) == before
    run_training(tmp_path, TINY + ["train.steps=4", "resume=auto", change, "resume_force=true", *QUIET])
    assert ckpt.load(ckpt.find_latest(tmp_path))["step"] == 4


def image_folder(root: Path, seed: int, n: int = 24) -> Path:
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True)
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(root / f"{i:03d}.png")
    return root


def test_a_resume_on_other_images_of_the_same_count_is_refused_and_the_same_images_moved_are_not(tmp_path, capsys):
    a, b = image_folder(tmp_path / "a", 0), image_folder(tmp_path / "b", 1)
    folder = ["dataset=folder", "dataset.resolution=32", "dataset.cache=false", "train.eval_every=100", *QUIET]
    run_dir = tmp_path / "run"
    run_training(run_dir, TINY + folder + [f"dataset.root={a}", "train.steps=2"])
    with pytest.raises(ckpt.CheckpointError, match=r"training images differ .*24 images then, 24 now.*resume_force"):
        run_training(run_dir, TINY + folder + [f"dataset.root={b}", "train.steps=4", "resume=auto"])
    moved = tmp_path / "moved"
    shutil.copytree(a, moved)  # the same images elsewhere (new file times): the same data
    capsys.readouterr()
    run_training(run_dir, TINY + folder + [f"dataset.root={moved}", "train.steps=4", "resume=auto"])
    assert "dataset.root" in capsys.readouterr().err  # named as a change, not refused
    assert ckpt.load(ckpt.find_latest(run_dir))["data"]["count"] == 24


CLI = [*TINY, *QUIET, "train.eval_every=100", "train.sample_every=100"]


@pytest.fixture
def cli(train_cli: Any) -> Any:
    return lambda *args, cwd: train_cli(*CLI, *args, cwd=cwd)


def test_refused_starts_resumes_and_dry_runs_leave_the_run_folder_as_it_was(tmp_path, cli):
    run_dir = tmp_path / "run"
    done = cli("train.steps=4", f"hydra.run.dir={run_dir}", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "train.steps=4" in (run_dir / ".hydra" / "overrides.yaml").read_text()
    before = files_of(run_dir)
    for args, said in [
        (["train.steps=5"], "already holds a run"),  # a fresh start into a finished run
        (["train.steps=6", "resume=auto", "model.width=0.25"], "another architecture"),
        (["train.steps=6", "resume=auto", "loss=wasserstein"], "resume_force=true"),
        (["train.steps=6", "resume=auto", "train.dry_run=true"], "dry run"),
        (["train.steps=6", f"resume={ckpt.checkpoint_path(run_dir, 2)}", "train.dry_run=true"], "would set aside"),
    ]:
        result = cli(*args, f"hydra.run.dir={run_dir}", cwd=tmp_path)
        assert said in result.stderr + result.stdout, (args, result.stderr)
        assert result.returncode == (0 if "train.dry_run=true" in args else 2), (args, result.stderr)
        assert files_of(run_dir) == before, args  # .hydra/, train.log, config.yaml, checkpoints: as they were
    # A refusal or a dry run into a new folder leaves no folder behind.
    for args in (["train.batch_size_d=0"], ["train.dry_run=true"]):
        result = cli("train.steps=2", *args, f"hydra.run.dir={tmp_path / 'new'}", cwd=tmp_path)
        assert not (tmp_path / "new").exists(), (args, result.stderr)
    # A resume that passes its checks records its own command.
    assert cli("train.steps=6", "resume=auto", f"hydra.run.dir={run_dir}", cwd=tmp_path).returncode == 0
    assert "resume=auto" in (run_dir / ".hydra" / "overrides.yaml").read_text()
    assert "Resumed from" in (run_dir / "train.log").read_text()


def test_a_tracker_that_cannot_start_stops_the_run_before_anything_is_written(tmp_path, monkeypatch):
    from sngan.config import ConfigError

    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE", raising=False)  # MLflow 3 then refuses its file store
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"file:{tmp_path / 'mlruns'}")
    run_dir = tmp_path / "run"
    with pytest.raises(ConfigError, match="MLFLOW_ALLOW_FILE_STORE=true"):
        run_training(run_dir, TINY + ["train.steps=2", "logger=mlflow", *QUIET])
    assert files_of(run_dir) == {}  # no config.yaml, provenance.json, tb/ or checkpoints
