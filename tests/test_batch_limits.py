"""Batches the networks cannot train on, batches larger than the dataset, and running out of memory at the
start: each a one-paragraph error and exit code 2 before anything is lost, instead of a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from helpers import THREADS, TINY, compose_cfg, validated

from sngan.cli.build import build_run
from sngan.cli.errors import run_or_exit
from sngan.cli.settings import check_train, check_world
from sngan.cli.start import start
from sngan.config import ConfigError, to_container
from sngan.data import BatchSampler, load_images
from sngan.training.iteration import NonFiniteError
from sngan.training.speed import Speed
from sngan.utils import checkpoint as ckpt
from sngan.utils.distributed import Dist
from sngan.utils.memory import OutOfMemory

ONE_STEP = TINY + ["train.steps=1", "train.eval_every=1", "train.checkpoint_every=1", "train.monitor_every=null"]
RESNET = ["model=resnet32", "model.width=0.125"]


def train(run_dir: Path, overrides: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """Train in-process as ``python -m sngan.train`` does; its exit code (0: success) and stderr."""
    raw = compose_cfg(overrides)
    torch.set_num_threads(THREADS)
    try:
        run_or_exit(lambda: start(check_train(raw), to_container(raw), run_dir), NonFiniteError)
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


# ---------------------------------------------------------------- larger than the dataset


@pytest.mark.parametrize("batch", [201, 10**9])
def test_a_real_batch_larger_than_the_dataset_is_refused_before_anything_is_built(tmp_path, capsys, monkeypatch, batch):
    """10**9 allocated 3 TB after 51 s and died with a traceback; 201 of 200 images repeated images."""

    def never(*args, **kwargs):
        raise AssertionError("the networks were built")

    monkeypatch.setattr("sngan.cli.start.build_run", never)
    code, err = train(tmp_path / "run", ONE_STEP + [f"train.batch_size_d={batch}"], capsys)
    assert code == 2 and one_paragraph(err), err
    assert f"train.batch_size_d={batch} is larger than the dataset, which holds 200 images" in err
    assert "train.batch_size_d=200 or less" in err and "(dataset.size)" in err


def test_a_batch_as_large_as_the_dataset_trains(tmp_path, capsys):
    code, err = train(tmp_path / "run", ONE_STEP + ["dataset.size=16", "train.batch_size_d=16"], capsys)
    assert code == 0, err


# ---------------------------------------------------------------- out of memory at the start


def test_running_out_of_host_memory_in_the_first_step_names_what_to_lower(tmp_path, capsys):
    """A G batch the host cannot hold (160 TB of noise: beyond any address space) was a traceback."""
    code, err = train(tmp_path / "run", ONE_STEP + [f"train.batch_size_g={10**13}"], capsys)
    assert code == 2 and one_paragraph(err), err
    assert "Out of memory while running the first training step" in err and "allocate" in err
    assert f"train.batch_size_g={10**13}" in err and "train.data_on=host" in err and "model.width=0.125" in err
    assert "Nothing was lost" in err
    assert ckpt.find_latest(tmp_path / "run") is None


@pytest.mark.parametrize(
    "error",
    [
        torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB.\nOf the allocated memory ..."),
        MemoryError(),
        RuntimeError("[enforce fail at alloc_cpu.cpp:117] data. DefaultCPUAllocator: not enough memory: you tried"),
    ],
    ids=["cuda", "python", "cpu-allocator"],
)
def test_every_kind_of_out_of_memory_in_the_first_step_becomes_one_paragraph(tmp_path, capsys, monkeypatch, error):
    def g_step(*args, **kwargs):
        raise error

    monkeypatch.setattr("sngan.training.iteration.g_step", g_step)
    code, err = train(tmp_path / "run", ONE_STEP, capsys)
    assert code == 2 and one_paragraph(err), err
    assert "Out of memory while running the first training step" in err and "Nothing was lost" in err
    assert "Of the allocated memory" not in err  # CUDA's allocator tips: not one paragraph, not ours


def test_out_of_memory_after_the_first_step_and_other_errors_pass_unchanged(tmp_path, capsys, monkeypatch):
    from sngan.training import iteration

    calls = []

    def g_step(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 MiB.")
        return real(*args, **kwargs)

    real = iteration.g_step
    monkeypatch.setattr("sngan.training.iteration.g_step", g_step)
    raw = compose_cfg(ONE_STEP + ["train.steps=2"])
    with pytest.raises(torch.OutOfMemoryError):
        start(validated(raw), to_container(raw), tmp_path / "run")

    def broken(*args, **kwargs):
        raise RuntimeError("shape mismatch")

    monkeypatch.setattr("sngan.training.iteration.g_step", broken)
    with pytest.raises(RuntimeError, match="shape mismatch"):
        start(validated(raw), to_container(raw), tmp_path / "other")


def test_running_out_of_device_memory_while_placing_the_images_names_what_to_lower(monkeypatch):
    def place(self, device):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 140.00 GiB.")

    import sngan.utils.memory as memory

    asked = []  # the device whose free memory the message gives: the one placed on, not the host
    monkeypatch.setattr(BatchSampler, "place", place)
    monkeypatch.setattr(memory, "memory_free", lambda device: asked.append(device) or "1.50 GiB free now")
    cfg = validated(compose_cfg(TINY))
    data = load_images("synthetic", "data", 32, synthetic_size=200)
    with pytest.raises(OutOfMemory, match=r"placing the training images on cpu .*140.00 GiB.; 1.50 GiB free now.*"
                                          r"train.data_on=host"):  # fmt: skip
        build_run(cfg, data, torch.device("cpu"), speed=Speed(data_on_device=True))
    assert asked == [torch.device("cpu")]
