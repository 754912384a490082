"""Batches the networks cannot train on, batches larger than the dataset, and running out of memory at the
start: each a one-paragraph error and exit code 2 before anything is lost, instead of a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from helpers import THREADS, TINY, compose_cfg, validated

from sngan import checkpoint as ckpt
from sngan.cli import run_or_exit
from sngan.config import ConfigError, to_container
from sngan.distributed import Dist
from sngan.train import NonFiniteError, check_config, check_world, start

ONE_STEP = TINY + ["train.steps=1", "train.eval_every=1", "train.checkpoint_every=1", "train.monitor_every=null"]
RESNET = ["model=resnet32", "model.width=0.125"]


def train(run_dir: Path, overrides: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """Train in-process as ``python -m sngan.train`` does; its exit code (0: success) and stderr."""
    raw = compose_cfg(overrides)
    torch.set_num_threads(THREADS)
    try:
        run_or_exit(lambda: start(check_config(raw), to_container(raw), run_dir), NonFiniteError)
    except SystemExit as stop:
        return int(stop.code), capsys.readouterr().err
    return 0, capsys.readouterr().err


def one_paragraph(err: str) -> bool:
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    return len(lines) == 1 and "Traceback" not in err


# ---------------------------------------------------------------- too small for G's BatchNorm


@pytest.mark.parametrize("key", ["batch_size_d", "batch_size_g"])
def test_a_batch_of_one_is_refused_for_the_cnn(tmp_path, capsys, key):
    """cnn32's G opens with a BatchNorm1d: one image per batch was a BatchNorm traceback, exit 1."""
    code, err = train(tmp_path / "run", ONE_STEP + [f"train.{key}=1"], capsys)
    assert code == 2 and one_paragraph(err), err
    assert f"train.{key}=1 is too small for model 'cnn32'" in err and f"train.{key}=2 or more" in err
    assert "resnet32, resnet48" in err  # the models that do train on one
    assert not (tmp_path / "run" / "checkpoints").exists()


@pytest.mark.parametrize("conditional", [False, True])
def test_resnets_train_on_a_batch_of_one(tmp_path, capsys, conditional):
    """Their BatchNorm2d layers normalize over the image's positions too: one image per batch trains."""
    extra = ["dataset.modes=3", "model.conditional=true"] if conditional else []
    overrides = ONE_STEP + RESNET + extra + ["train.batch_size_d=1", "train.batch_size_g=1"]
    code, err = train(tmp_path / "run", overrides, capsys)
    assert code == 0, err
    assert ckpt.find_latest(tmp_path / "run") is not None


def test_the_smallest_batch_per_process_is_the_models():
    cnn = validated(compose_cfg(TINY + ["train.batch_size_d=2"]))
    with pytest.raises(ConfigError, match=r"train.batch_size_d=2 is the global batch .* at least 2 per process"):
        check_world(cnn, Dist(0, 2), torch.device("cpu"))
    resnet = validated(compose_cfg(TINY + RESNET + ["train.batch_size_d=2", "train.batch_size_g=2"]))
    check_world(resnet, Dist(0, 2), torch.device("cpu"))  # one image per process trains a ResNet
    with pytest.raises(ConfigError, match="too small for model 'cnn32'"):  # one process is checked too
        check_world(validated(compose_cfg(TINY + ["train.batch_size_g=1"])), Dist(), torch.device("cpu"))
