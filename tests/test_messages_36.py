"""Issue 36: images brought to the reals' resolution as the docs say (block means for integer multiples,
bicubic fit for folder and other sizes); and messages: a setting that does not exist, ``python -m sngan``,
each command's --help, sample's frames, report on a missing path and on a run folder named in CJK.
(W&B's mode and the trackers' start-up errors: tests/test_loggers.py.)"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import TINY, compose_cfg, validated
from hydra import compose, initialize_config_module
from omegaconf import OmegaConf
from PIL import Image, ImageOps

from sngan.cli.command_settings import check_sample
from sngan.config import ConfigError
from sngan.data.image_sets import load_image_set

ROOT = Path(__file__).resolve().parent.parent
TRAIN = TINY + ["train.steps=1"]


# ----------------------------------------------------------------- resizing images to be scored


def npz(tmp_path: Path, size: int, n: int = 3) -> np.ndarray:
    images = np.random.default_rng(size).integers(0, 256, (n, size, size, 3), dtype=np.uint8)
    np.savez(tmp_path / f"{size}.npz", images=images)
    return images


def block_means(images: np.ndarray, k: int) -> torch.Tensor:
    n, h, w, c = images.shape
    means = images.reshape(n, h // k, k, w // k, k, c).astype(np.float64).mean(axis=(2, 4))
    return torch.from_numpy(np.round(means).astype(np.uint8)).permute(0, 3, 1, 2)


def bicubic_fit(images: np.ndarray, r: int) -> torch.Tensor:
    fitted = [np.asarray(ImageOps.fit(Image.fromarray(a), (r, r), Image.Resampling.BICUBIC)) for a in images]
    return torch.from_numpy(np.stack(fitted)).permute(0, 3, 1, 2)


@pytest.mark.parametrize("dataset", ["cifar10", "synthetic", "stl10"])
def test_a_multiple_of_the_resolution_is_the_rounded_mean_of_its_blocks(tmp_path, dataset):
    """docs/metrics.md: "64x64 -> 32x32 by averaging 2x2 blocks" for every dataset but folder (CIFAR's
    reals are never resized; this used to be a bicubic fit under CIFAR, unlike the docs)."""
    for size, k in ((64, 2), (96, 3)):
        images = npz(tmp_path, size)
        found = load_image_set(str(tmp_path / f"{size}.npz"), 32, dataset)
        assert torch.equal(found.images, block_means(images, k))
        assert found.resized == f"{size}x{size} -> 32x32 by averaging {k}x{k} blocks"  # the note's words


def test_folder_fits_by_bicubic_as_its_reals_and_other_sizes_too(tmp_path):
    images = npz(tmp_path, 64)
    found = load_image_set(str(tmp_path / "64.npz"), 32, "folder")  # dataset=folder's reals: PIL's fit
    assert torch.equal(found.images, bicubic_fit(images, 32)) and found.resized == "64x64 -> 32x32 by bicubic fit"
    assert not torch.equal(found.images, block_means(images, 2))
    odd = npz(tmp_path, 48)  # not a multiple of 32: the bicubic fit, under CIFAR too
    found = load_image_set(str(tmp_path / "48.npz"), 32, "cifar10")
    assert torch.equal(found.images, bicubic_fit(odd, 32)) and found.resized == "48x48 -> 32x32 by bicubic fit"
    found = load_image_set(str(tmp_path / "48.npz"), 32, "stl10")  # STL-10 keeps its reals' area averaging
    assert found.resized == "48x48 -> 32x32 by area averaging"


def test_the_docs_say_what_the_resizing_does():
    text = " ".join((ROOT / "docs" / "metrics.md").read_text().split())
    assert "64x64 -> 32x32 by averaging 2x2 blocks" in text and "k x k block" in text
    assert "except under `dataset=folder`, whose reals are read by PIL's bicubic fit" in text


# ----------------------------------------------------------------- a setting that does not exist


def sample_raw(overrides: list[str]):
    with initialize_config_module(config_module="sngan.configs", version_base="1.3"):
        return compose(config_name="sample", overrides=overrides)


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("+train.step=10", "train.step=10: there is no setting train.step; did you mean train.steps?"),
        ("+train.lr_g=0.1", "train.lr_g=0.1: there is no setting train.lr_g; did you mean optim.lr_g?"),
        ("+logger.mdoe=offline", "logger.mdoe=offline: there is no setting logger.mdoe; did you mean logger.mode?"),
        ("+seeed=3", "seeed=3: there is no setting seeed; did you mean seed?"),
        ("+train.zzzz=1", "train.zzzz=1: there is no setting train.zzzz; the settings under train are: steps, "),
    ],
)
def test_a_setting_that_does_not_exist_names_the_value_given_and_the_closest_setting(override, expected):
    with pytest.raises(ConfigError) as refused:
        validated(compose_cfg(TRAIN + [override]))
    assert expected in str(refused.value) and "(value None)" not in str(refused.value), str(refused.value)


@pytest.mark.parametrize(
    ("command", "args", "expected"),
    [
        ("train", ["train.step=10"], "there is no setting train.step; did you mean train.steps?"),
        ("train", ["trian.steps=10"], "trian.steps=10: there is no setting trian.steps; did you mean train.steps?"),
        ("train", ["seeed=3"], "there is no setting seeed; did you mean seed?"),
        ("sample", ["ckpt=x.pt", "frame=4"], "there is no setting frame; did you mean frames?"),
        ("evaluate", ["ckpt=x.pt", "metrics.n_fak=1"], "no setting metrics.n_fak; did you mean metrics.n_fake?"),
    ],
)
def test_a_misspelt_override_on_the_command_line_names_the_closest_setting_not_hydras_plus(
    command, args, expected, command_line, tmp_path
):
    """Without a +, Hydra refuses a key its config lacks and advises adding it (+train.step=10), which is wrong
    for a typo: the commands hand such a key to the schema's check, which names the setting meant."""
    run_dir = tmp_path / "run"
    where = [f"hydra.run.dir={run_dir}"] if command == "train" else []
    done = command_line(command, *args, *where, cwd=tmp_path)
    assert done.returncode == 2 and expected in done.stderr, done.stderr
    assert "+" not in done.stderr and "not in struct" not in done.stderr, done.stderr
    assert not run_dir.exists()  # a refused training leaves no run folder


def test_overrides_hydra_knows_or_the_schema_has_pass_as_they_are():
    from sngan.config import TrainConfig
    from sngan.config.load import hydra_args

    kept = ["experiment=quickstart", "model=resnet32", "model.width=0.5", "train.steps=1,2", "+train.extra=1",
            "~logger", "++seed=3", "hydra.run.dir=x", "hydra/launcher=submitit_local", "metrics.measures.0=fid",
            "-m", "--cfg", "job", "dataset@x=cifar10"]  # fmt: skip
    assert hydra_args(kept, TrainConfig) == kept
    assert hydra_args(["train.step=1", "seeed=3"], TrainConfig) == ["+train.step=1", "+seeed=3"]


def test_a_typo_in_an_edited_yaml_and_in_sample_settings_is_named_too():
    raw = compose_cfg(TRAIN)
    OmegaConf.set_struct(raw, False)
    raw.train.n_diss = 3  # as an edited experiment file would add it
    with pytest.raises(ConfigError, match=re.escape("train.n_diss=3: there is no setting train.n_diss; did you")):
        validated(raw)
    with pytest.raises(ConfigError, match=re.escape("frame=4: there is no setting frame; did you mean frames?")):
        check_sample(sample_raw(["ckpt=x", "+frame=4"]))


def test_sample_frames_1_says_an_interpolation_needs_two_frames():
    with pytest.raises(ConfigError) as refused:
        check_sample(sample_raw(["ckpt=x", "frames=1"]))
    assert "frames=1 is not allowed; an interpolation needs at least 2 frames" in str(refused.value)
    assert "greater than 0" not in str(refused.value)


# ----------------------------------------------------------------- python -m sngan, --help


def python_m(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True, timeout=120, cwd=ROOT)


COMMANDS = ("train", "evaluate", "sample", "export", "fid_stats", "report", "paper_figures")


@pytest.mark.slow
def test_python_m_sngan_lists_the_commands_and_an_example():
    for argv in ([], ["--help"]):
        done = python_m("sngan", *argv)
        assert done.returncode == 0 and not done.stderr, done.stderr
        listed = re.findall(r"^  python -m sngan\.(\w+) +\S", done.stdout, flags=re.M)
        assert tuple(listed) == COMMANDS and "example: python -m sngan.train experiment=quickstart" in done.stdout
    done = python_m("sngan", "train", "train.steps=1")
    assert done.returncode == 2 and not done.stdout and "Traceback" not in done.stderr
    assert "run python -m sngan.train train.steps=1." in done.stderr and "python -m sngan.report" in done.stderr


def help_groups(text: str) -> dict[str, list[str]]:
    """The group lines of a --help page: {group: [options]} (a note in parentheses after the options)."""
    found = re.search(r"^== Config(?:uration)? groups[^\n]*==\n(.*?)^== ", text, flags=re.S | re.M)
    section = found.group(1) if found else ""
    lines = re.findall(r"^(\w+): ([\w, ]+?)(?:\s{2,}\(.*)?$", section, flags=re.M)
    return {group: options.split(", ") for group, options in lines}


def group_options(group: str) -> list[str]:
    return sorted(p.stem for p in (ROOT / "sngan" / "configs" / group).glob("*.yaml"))


@pytest.mark.slow
@pytest.mark.parametrize(
    ("command", "groups", "setting"),
    [
        ("sample", [], "frames: 8"),
        ("export", [], "overwrite: false"),
        ("evaluate", ["metrics", "inception", "dataset"], "intra_class: false"),
        ("fid_stats", ["dataset", "inception"], "split: null"),
    ],
)
def test_each_commands_help_lists_its_own_settings_and_only_the_groups_it_takes(command, groups, setting, command_line):
    done = command_line(command, "--help", cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"python -m sngan.{command}: ") and setting in done.stdout
    assert help_groups(done.stdout) == {group: group_options(group) for group in groups}  # the files' options
    assert "model:" not in done.stdout and "loss:" not in done.stdout and "logger:" not in done.stdout


@pytest.mark.slow
def test_train_help_keeps_every_group(command_line):
    done = command_line("train", "--help", cwd=ROOT)
    assert done.returncode == 0, done.stderr
    groups = help_groups(done.stdout)
    for group in ("model", "dataset", "loss", "optim", "metrics", "inception", "logger", "augment", "experiment"):
        assert groups[group] == group_options(group), group


# ----------------------------------------------------------------- report


def tb_run(run_dir: Path) -> Path:
    from torch.utils.tensorboard import SummaryWriter

    with SummaryWriter(str(run_dir / "tb")) as writer:
        for step in (1, 2):
            writer.add_scalar("loss/d", 1.0 / step, step)
    return run_dir


def test_report_on_a_path_that_does_not_exist_says_so(tmp_path, capsys):
    from sngan.report import main

    with pytest.raises(SystemExit) as stop:
        main([str(tmp_path / "nowhere")])
    err = capsys.readouterr().err
    assert stop.value.code == 2 and f"'{tmp_path / 'nowhere'}' does not exist" in err and "tb/" not in err, err
    assert not (tmp_path / "nowhere").exists()


@pytest.mark.slow
def test_report_on_a_run_folder_named_in_cjk_prints_one_note_and_no_raw_warning(tmp_path):
    run_dir = tb_run(tmp_path / "実験_ラン")
    done = python_m("sngan.report", str(run_dir))
    assert done.returncode == 0, done.stderr
    assert "UserWarning" not in done.stderr and "Glyph" not in done.stderr and "fig." not in done.stderr
    notes = [line for line in done.stderr.splitlines() if line.startswith("note:")]
    others = [line for line in done.stderr.splitlines() if not line.startswith(("note:", "Wrote "))]
    assert not others, done.stderr  # no warning's source line either
    if notes:  # no installed font has them (as on the test machines): one line, where they appear
        assert len(notes) == 1 and "実験ラン" in notes[0] and "U+5B9F" in notes[0], notes
        assert "in the title (the run folder's path)" in notes[0]
    assert (run_dir / "report" / "report.png").is_file()


@pytest.mark.slow
def test_report_draws_characters_its_default_font_lacks_with_an_installed_font_that_has_them(tmp_path):
    """DejaVu Sans has no U+2322 (frown); matplotlib's own STIX fonts have it: no note, no warning."""
    done = python_m("sngan.report", str(tb_run(tmp_path / "run_\u2322")))
    assert done.returncode == 0 and "note:" not in done.stderr and "Warning" not in done.stderr, done.stderr
