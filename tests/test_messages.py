"""Errors that used to mislead: each says what is wrong and what to do, in one paragraph with exit code 2.

An export given where a training checkpoint is needed; dataset.root naming a file; inf/nan settings; a
checkpoint refused by torch's weights-only loader (torch's advice to load it unsafely is never repeated);
python -m sngan.report on a run folder it cannot write to."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from helpers import THREADS, TINY, compose_cfg, validated
from hydra import compose, initialize_config_module

from sngan.cli.command_settings import check_evaluate, check_export, check_fid_stats, check_sample
from sngan.cli.errors import run_or_exit
from sngan.cli.settings import check_train
from sngan.cli.start import start
from sngan.config import ConfigError, to_container
from sngan.data import DatasetError, load_images
from sngan.evaluate import evaluate
from sngan.fid_stats import compute
from sngan.inference import export_generator, load_generator
from sngan.models import build_models
from sngan.sample import sample
from sngan.utils import checkpoint as ckpt

MARKER = Path("/tmp/sngan-messages-marker")
TRAIN = TINY + ["train.steps=1"]
OTHER_DATA = [o for o in TRAIN if not o.startswith("dataset.size")]  # a synthetic-only key


class _Planted:
    def __reduce__(self):
        return (open, (str(MARKER), "w"))


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    """A training checkpoint (made without training), its export, the export renamed, a malicious
    checkpoint and a plain file."""
    root = tmp_path_factory.mktemp("messages")
    generator, _ = build_models("cnn32", 4, 0.125, False)
    model = {"name": "cnn32", "z_dim": 4, "width": 0.125, "conditional": False}
    state = {"format_version": ckpt.FORMAT_VERSION, "step": 0, "config": {"model": model}, "ema": None}
    f = {"ckpt": ckpt.save_atomic(state | {"generator": generator.state_dict()}, root / "ckpt_00000000.pt")}
    f["export"], meta = export_generator(f["ckpt"], root / "g.safetensors")
    f["renamed"] = root / "g_copy.pt"  # an export renamed: known by its content
    f["renamed"].write_bytes(f["export"].read_bytes())
    (root / "g_copy.json").write_bytes(meta.read_bytes())
    f["evil"] = root / "evil.pt"
    torch.save({"format_version": 1, "payload": _Planted()}, f["evil"])
    f["file"] = root / "a_file"
    f["file"].write_text("not a folder")
    return f


def invoke(command: str, overrides: list[str], run_dir: Path) -> int:
    """Run a command in-process as its entry point does; return its exit code (0: success)."""
    with initialize_config_module(config_module="sngan.configs", version_base="1.3"):
        raw = compose(config_name=command, overrides=overrides)
    torch.set_num_threads(THREADS)
    body = {
        "train": lambda: start(check_train(raw), to_container(raw), run_dir),
        "evaluate": lambda: evaluate(check_evaluate(raw)),
        "sample": lambda: sample(check_sample(raw)),
        "fid_stats": lambda: compute(check_fid_stats(raw)),
        "export": lambda: export_command(raw),
    }[command]
    try:
        run_or_exit(body)
    except SystemExit as stop:
        return int(stop.code)
    return 0


def export_command(raw):
    cfg = check_export(raw)
    return export_generator(cfg.ckpt, cfg.out, cfg.ema, cfg.overwrite)


def one_paragraph_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    lines = err.splitlines()
    assert lines and lines[-1].startswith("error: ") and "Traceback" not in err, err
    return lines[-1]


def run(command: str, overrides: list[str], files: dict[str, Path], tmp_path: Path) -> int:
    filled = [o.format(**{k: str(v) for k, v in files.items()}) for o in overrides]
    if command in ("evaluate", "sample", "fid_stats"):
        filled.append("device=cpu")
    if command in ("sample", "export"):
        filled.append(f"out={tmp_path / 'out'}")
    return invoke(command, filled, tmp_path / "run")


# ----------------------------------------------------------------- an export where a checkpoint is needed

EXPORT_GIVEN = [
    ("train", TRAIN + ["resume={export}"]),
    ("train", TRAIN + ["resume={renamed}"]),
    ("evaluate", ["ckpt={export}"]),
    ("evaluate", ["ckpt={renamed}"]),
    ("export", ["ckpt={export}"]),
    ("export", ["ckpt={renamed}"]),
]


@pytest.mark.parametrize(("command", "overrides"), EXPORT_GIVEN, ids=[f"{c}-{o[-1]}" for c, o in EXPORT_GIVEN])
def test_an_export_given_as_a_checkpoint_is_named_as_one(command, overrides, files, tmp_path, capsys):
    assert run(command, overrides, files, tmp_path) == 2
    message = one_paragraph_error(capsys)
    assert "exported by python -m sngan.export, not a training checkpoint" in message, message
    assert "ckpt_<step>.pt" in message and "sngan.load_generator" in message and "python -m sngan.sample" in message
    assert "format version" not in message and "release that wrote it" not in message


MISSING = [
    ("train", TRAIN + ["resume={missing}"], "resume=auto"),
    ("evaluate", ["ckpt={missing}"], "or a run folder"),
    ("sample", ["ckpt={missing}"], "checkpoints/ckpt_<step>.pt and best.pt"),
    ("export", ["ckpt={missing}"], "checkpoints/ckpt_<step>.pt and best.pt"),
]


@pytest.mark.parametrize(("command", "overrides", "advice"), MISSING, ids=[c for c, _, _ in MISSING])
def test_a_missing_checkpoint_gets_the_advice_of_its_command(command, overrides, advice, files, tmp_path, capsys):
    """Only train takes resume=: the other commands' message used to tell users to pass it."""
    files = files | {"missing": tmp_path / "nowhere" / "ckpt_00000004.pt"}
    assert run(command, overrides, files, tmp_path) == 2
    message = one_paragraph_error(capsys)
    assert "does not exist" in message and advice in message, message
    assert command == "train" or "resume=" not in message


def test_a_missing_checkpoint_through_the_python_api_names_where_checkpoints_are(tmp_path):
    from sngan.inference import generator_from_checkpoint

    with pytest.raises(ckpt.CheckpointError) as caught:
        generator_from_checkpoint(tmp_path / "ckpt_00000004.pt")
    assert "does not exist" in str(caught.value) and "<run>/checkpoints/ckpt_<step>.pt" in str(caught.value)
    assert "resume=" not in str(caught.value)


@pytest.mark.parametrize("key", ["export", "renamed"])
def test_sample_and_load_generator_take_an_export_renamed_or_not(key, files, tmp_path, capsys):
    assert run("sample", [f"ckpt={{{key}}}", "n=2"], files, tmp_path) == 0, capsys.readouterr().err
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["000000.png", "000001.png"]
    assert load_generator(files[key]).z_dim == 4
    with pytest.raises(ckpt.CheckpointError, match="not a training checkpoint"):
        ckpt.load(files[key])


# ----------------------------------------------------------------- dataset.root naming a file

ROOT_IS_A_FILE = [
    ("train", OTHER_DATA + ["dataset=folder", "dataset.root={file}"]),
    ("train", OTHER_DATA + ["dataset=cifar10", "model=cnn32", "dataset.root={file}"]),
    ("fid_stats", ["dataset=folder", "dataset.root={file}", "dataset.resolution=32"]),
]


@pytest.mark.parametrize(("command", "overrides"), ROOT_IS_A_FILE, ids=["train-folder", "train-cifar10", "fid_stats"])
def test_dataset_root_naming_a_file_says_so(command, overrides, files, with_inception, tmp_path, capsys):
    assert run(command, overrides, files, tmp_path) == 2
    message = one_paragraph_error(capsys)
    assert "a_file' is a file, not a folder" in message and "dataset.root" in message, message
    assert "does not exist" not in message and "download" not in message.split("is a file")[0]


@pytest.mark.parametrize("name", ["folder", "cifar10", "cifar100", "stl10"])
def test_load_images_refuses_a_file_as_root(name, files):
    with pytest.raises(DatasetError, match="is a file, not a folder"):
        load_images(name, str(files["file"]), 48 if name == "stl10" else 32)


# ----------------------------------------------------------------- inf and nan settings


@pytest.mark.parametrize(
    "override",
    ["optim.lr_g=inf", "optim.lr_d=nan", "model.width=inf", "optim.beta2=-inf", "train.ema_decay=nan",
     "train.checkpoint_minutes=inf", "train.max_minutes=nan"],
)  # fmt: skip
def test_non_finite_settings_are_refused_naming_the_key(override):
    key = override.split("=")[0]
    with pytest.raises(ConfigError, match=rf"{key}=(inf|nan|-inf) is not allowed; give a finite number"):
        validated(compose_cfg(TRAIN + [override]))


def test_a_non_finite_learning_rate_stops_the_train_command(files, tmp_path, capsys):
    assert run("train", TRAIN + ["optim.lr_g=inf"], files, tmp_path) == 2
    message = one_paragraph_error(capsys)
    assert "optim.lr_g=inf" in message and "finite" in message and not (tmp_path / "run" / "checkpoints").exists()


# ----------------------------------------------------------------- a checkpoint holding code

MALICIOUS = [
    ("train", TRAIN + ["resume={evil}"]),
    ("evaluate", ["ckpt={evil}"]),
    ("sample", ["ckpt={evil}"]),
    ("export", ["ckpt={evil}"]),
]


@pytest.mark.parametrize(("command", "overrides"), MALICIOUS, ids=[c for c, _ in MALICIOUS])
def test_a_malicious_checkpoint_is_refused_for_safety_without_torchs_advice(
    command, overrides, files, tmp_path, capsys
):
    MARKER.unlink(missing_ok=True)
    assert run(command, overrides, files, tmp_path) == 2
    message = one_paragraph_error(capsys)
    assert "refused for safety" in message and "code or Python objects" in message and "evil.pt" in message
    for advice in ("weights_only", "safe_globals", "add_safe_globals", "Re-running", "allowlist"):
        assert advice not in message, message
    assert not MARKER.exists()  # nothing in it ran


# ----------------------------------------------------------------- report on a folder it cannot write


@pytest.fixture
def tb_run(tmp_path) -> Path:
    """A run folder holding only TensorBoard events (what the report reads)."""
    from torch.utils.tensorboard import SummaryWriter

    run_dir = tmp_path / "run"
    with SummaryWriter(str(run_dir / "tb")) as writer:
        for step in (1, 2):
            writer.add_scalar("loss/d", 1.0 / step, step)
    return run_dir


def report_main(argv: list[str]) -> int:
    from sngan.report import main

    try:
        main(argv)
    except SystemExit as stop:
        return int(stop.code)
    return 0


def test_report_on_a_read_only_run_folder_names_the_out_option(tb_run, tmp_path, monkeypatch, capsys):
    real_mkdir = Path.mkdir

    def read_only(self, *args, **kwargs):  # tests run as root, whom file modes do not stop: simulate EROFS
        if self == tb_run or tb_run in self.parents:
            raise OSError(30, "Read-only file system", str(self))
        return real_mkdir(self, *args, **kwargs)

    monkeypatch.setattr(Path, "mkdir", read_only)
    assert report_main([str(tb_run)]) == 2
    message = one_paragraph_error(capsys)
    assert "--out" in message and "Read-only file system" in message and "[Errno" not in message, message
    assert report_main([str(tb_run), "--out", str(tmp_path / "elsewhere")]) == 0
    assert (tmp_path / "elsewhere" / "report.png").is_file()


def test_report_blocked_by_a_file_names_the_out_option(tb_run, capsys):
    (tb_run / "report").write_text("a file where the report folder goes")
    assert report_main([str(tb_run)]) == 2
    message = one_paragraph_error(capsys)
    assert "--out" in message and "[Errno" not in message and str(tb_run / "report") in message, message


def test_a_sweep_table_goes_where_out_says(tmp_path, capsys):
    sweep = tmp_path / "sweep"
    (sweep / "0").mkdir(parents=True)
    (sweep / "0" / "metrics.jsonl").write_text('{"step": 2, "synthetic/quality": 0.5}\n')
    (sweep / "0" / "config.yaml").write_text("train:\n  steps: 2\n")
    (sweep / "ablation.md").mkdir()  # the sweep folder's own table cannot be written
    assert report_main([str(sweep)]) == 2
    assert "--out" in one_paragraph_error(capsys)
    assert report_main([str(sweep), "--out", str(tmp_path / "tables")]) == 0
    assert (tmp_path / "tables" / "ablation.json").is_file() and os.path.isdir(sweep / "ablation.md")
