"""python -m sngan.export never replaces files without overwrite=true: neither the .safetensors it names nor
the .json of the same name beside it (which may be a user's own notes.json); and it writes atomically."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from hydra import compose, initialize_config_module

from sngan.cli.command_settings import check_export
from sngan.cli.errors import run_or_exit
from sngan.inference import export_generator, load_generator
from sngan.models import build_models
from sngan.utils import checkpoint as ckpt


def tiny_checkpoint(path: Path) -> Path:
    """A training checkpoint of a narrow cnn32 generator, made without training (seconds faster)."""
    generator, _ = build_models("cnn32", 4, 0.125, False)
    model = {"name": "cnn32", "z_dim": 4, "width": 0.125, "conditional": False}
    state = {"format_version": ckpt.FORMAT_VERSION, "step": 0, "config": {"model": model}, "ema": None}
    return ckpt.save_atomic(state | {"generator": generator.state_dict()}, path)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    return tiny_checkpoint(tmp_path_factory.mktemp("export_overwrite") / "ckpt_00000000.pt")


def export_command(overrides: list[str]) -> int:
    """``python -m sngan.export`` in-process, as its entry point runs it; its exit code (0: success)."""
    with initialize_config_module(config_module="sngan.configs", version_base="1.3"):
        raw = compose(config_name="export", overrides=overrides)
    try:
        cfg = run_or_exit(lambda: check_export(raw))
        run_or_exit(lambda: export_generator(cfg.ckpt, cfg.out, cfg.ema, cfg.overwrite))
    except SystemExit as stop:
        return int(stop.code)
    return 0


@pytest.mark.parametrize("existing", ["notes.json", "notes.safetensors", "both"])
def test_export_refuses_to_replace_existing_files(existing, checkpoint, tmp_path, capsys):
    names = ["notes.json", "notes.safetensors"] if existing == "both" else [existing]
    for name in names:
        (tmp_path / name).write_text(f"the user's own {name}")
    code = export_command([f"ckpt={checkpoint}", f"out={tmp_path / 'notes.safetensors'}"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and err.startswith("error: "), err
    assert "overwrite=true" in err and all(name in err for name in names) and "Traceback" not in err
    for name in names:  # nothing was written
        assert (tmp_path / name).read_text() == f"the user's own {name}"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(names)


def test_export_replaces_both_files_with_overwrite_true(checkpoint, tmp_path, capsys):
    (tmp_path / "notes.json").write_text("old")
    (tmp_path / "notes.safetensors").write_text("old")
    assert export_command([f"ckpt={checkpoint}", f"out={tmp_path / 'notes'}", "overwrite=true"]) == 0
    assert json.loads((tmp_path / "notes.json").read_text())["model"] == "cnn32"
    assert load_generator(tmp_path / "notes.safetensors").z_dim == 4
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.json", "notes.safetensors"]  # no temp files left


def test_overwrite_must_be_a_bool(checkpoint, tmp_path, capsys):
    assert export_command([f"ckpt={checkpoint}", f"out={tmp_path / 'g'}", "overwrite=maybe"]) == 2
    assert "overwrite" in capsys.readouterr().err and not list(tmp_path.iterdir())


def test_a_failed_export_write_leaves_the_old_files_whole(checkpoint, tmp_path, monkeypatch):
    (tmp_path / "g.json").write_text("old json")
    (tmp_path / "g.safetensors").write_text("old weights")
    real = os.replace
    calls = []

    def full_disk(src, dst):  # the write fails at the rename: the old files stay whole, no temp file is left
        calls.append(dst)
        raise OSError(28, "No space left on device", str(dst))

    monkeypatch.setattr(os, "replace", full_disk)
    with pytest.raises(OSError, match="No space"):
        export_generator(checkpoint, tmp_path / "g.safetensors", overwrite=True)
    monkeypatch.setattr(os, "replace", real)
    assert calls and (tmp_path / "g.json").read_text() == "old json"
    assert (tmp_path / "g.safetensors").read_text() == "old weights"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["g.json", "g.safetensors"]  # temp files removed


def test_a_pair_torn_between_its_two_renames_is_refused_when_loaded(checkpoint, tmp_path, monkeypatch):
    """overwrite=true replaces two files one after the other: stopped between the two, the new weights sit
    beside the old .json. Both carry the export's id, so the mismatch is named instead of loaded."""
    export_generator(checkpoint, tmp_path / "g.safetensors")
    real, calls = os.replace, []

    def stopped_after_one(src, dst):
        calls.append(dst)
        if len(calls) == 2:
            raise OSError(28, "No space left on device", str(dst))
        real(src, dst)

    monkeypatch.setattr(os, "replace", stopped_after_one)
    with pytest.raises(OSError, match="No space"):
        export_generator(checkpoint, tmp_path / "g.safetensors", overwrite=True)
    monkeypatch.setattr(os, "replace", real)
    with pytest.raises(ckpt.CheckpointError, match=r"describes another export than .*overwrite=true"):
        load_generator(tmp_path / "g.safetensors")
    export_generator(checkpoint, tmp_path / "g.safetensors", overwrite=True)  # what the message says to do
    assert load_generator(tmp_path / "g.safetensors").z_dim == 4


def test_export_command_line_refuses_with_exit_code_2(checkpoint, tmp_path, command_line):
    (tmp_path / "notes.json").write_text("mine")
    proc = command_line("export", f"ckpt={checkpoint}", "out=notes.safetensors", cwd=tmp_path)
    assert proc.returncode == 2 and "overwrite=true" in proc.stderr and "Traceback" not in proc.stderr
    assert (tmp_path / "notes.json").read_text() == "mine" and not (tmp_path / "notes.safetensors").exists()
