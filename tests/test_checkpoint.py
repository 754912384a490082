import os
import random

import numpy as np
import pytest
import torch

from sngan.utils import checkpoint as ckpt


def test_save_load_round_trip_with_weights_only(tmp_path):
    state = {"format_version": ckpt.FORMAT_VERSION, "step": 3, "w": torch.arange(4.0), "config": {"a": [1, "x"]}}
    path = ckpt.save_atomic(state, ckpt.checkpoint_path(tmp_path, 3))
    loaded = ckpt.load(path)
    assert loaded["step"] == 3 and torch.equal(loaded["w"], state["w"]) and loaded["config"] == {"a": [1, "x"]}
    assert not list(path.parent.glob(".*.tmp"))


def test_keeps_only_the_newest_checkpoints(tmp_path):
    for step in (5, 10, 15, 20):
        ckpt.save_atomic({"format_version": 1, "step": step}, ckpt.checkpoint_path(tmp_path, step), keep=2)
    assert [p.name for p in ckpt.list_checkpoints(tmp_path)] == ["ckpt_00000015.pt", "ckpt_00000020.pt"]
    assert ckpt.find_latest(tmp_path).name == "ckpt_00000020.pt"
    assert ckpt.find_latest(tmp_path / "nothing") is None


def test_truncated_checkpoint_gives_a_clear_error(tmp_path):
    path = ckpt.save_atomic({"format_version": 1, "w": torch.zeros(1000)}, tmp_path / "c.pt")
    path.write_bytes(path.read_bytes()[:500])
    with pytest.raises(ckpt.CheckpointError, match=r"c\.pt' cannot be read.*earlier one"):
        ckpt.load(path)
    with pytest.raises(ckpt.CheckpointError, match="does not exist"):
        ckpt.load(tmp_path / "missing.pt")


class _Planted:
    def __reduce__(self):
        return (open, ("/tmp/sngan-planted-marker", "w"))


def test_pickled_code_is_refused_without_running_it(tmp_path):
    marker = "/tmp/sngan-planted-marker"
    if os.path.exists(marker):
        os.remove(marker)
    path = tmp_path / "evil.pt"
    torch.save({"format_version": 1, "payload": _Planted()}, path)
    with pytest.raises(ckpt.CheckpointError, match="evil.pt"):
        ckpt.load(path)
    assert not os.path.exists(marker)


def test_other_format_version_is_refused(tmp_path):
    path = ckpt.save_atomic({"format_version": 99}, tmp_path / "new.pt")
    with pytest.raises(ckpt.CheckpointError, match="format version 99"):
        ckpt.load(path)


def test_unwritable_folder_gives_a_clear_error_and_keeps_old_files(tmp_path):
    good = ckpt.save_atomic({"format_version": 1, "step": 1}, ckpt.checkpoint_path(tmp_path, 1))
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(ckpt.CheckpointError, match="Could not write checkpoint"):
        ckpt.save_atomic({"format_version": 1}, blocker / "checkpoints" / "ckpt_00000002.pt")
    assert ckpt.load(good)["step"] == 1


def test_rng_state_round_trips_through_a_weights_only_file(tmp_path):
    random.seed(1), np.random.seed(2), torch.manual_seed(3)
    path = ckpt.save_atomic({"format_version": 1, "rng": ckpt.rng_state()}, tmp_path / "r.pt")
    want = (random.random(), np.random.rand(), torch.rand(1))
    random.seed(9), np.random.seed(9), torch.manual_seed(9)
    ckpt.set_rng_state(ckpt.load(path)["rng"])
    got = (random.random(), np.random.rand(), torch.rand(1))
    assert got[0] == want[0] and got[1] == want[1] and torch.equal(got[2], want[2])


def test_resuming_an_earlier_checkpoint_of_the_run_sets_the_later_ones_aside(tmp_path, capsys):
    import json
    import shutil

    from helpers import TINY, run_training

    args = TINY + ["train.keep_checkpoints=10"]
    run_training(tmp_path, args + ["train.steps=6"])  # checkpoints at steps 2, 4, 6
    shutil.copy(ckpt.checkpoint_path(tmp_path, 6), tmp_path / "checkpoints" / "best.pt")  # as a FID rule keeps it
    rewind = ["train.steps=4", f"resume={ckpt.checkpoint_path(tmp_path, 2)}"]
    with pytest.raises(ckpt.CheckpointError, match="another architecture"):  # refused: nothing is moved
        run_training(tmp_path, args + rewind + ["model.width=0.25"])
    assert len(ckpt.list_checkpoints(tmp_path)) == 3 and not list((tmp_path / "checkpoints").glob("abandoned_*"))
    run_training(tmp_path, args + rewind)
    (aside,) = (tmp_path / "checkpoints").glob("abandoned_after_2_*")
    assert sorted(p.name for p in aside.iterdir()) == ["best.pt", "ckpt_00000004.pt", "ckpt_00000006.pt"]
    assert "moved to" in capsys.readouterr().err
    assert [ckpt.step_of(p) for p in ckpt.list_checkpoints(tmp_path)] == [2, 4]  # the resumed line's own
    rows = lambda name: [json.loads(line)["step"] for line in (tmp_path / name).read_text().splitlines()]  # noqa: E731
    assert rows("metrics.jsonl") == [2, 4] and rows("metrics_purged.jsonl") == [4, 6]  # one line of history
    run_training(tmp_path, args + ["train.steps=5", "resume=auto"])  # goes on from 4, never from the old 6
    assert ckpt.load(ckpt.find_latest(tmp_path))["step"] == 5 and (aside / "ckpt_00000006.pt").is_file()
    run_training(tmp_path, args + ["train.steps=6", f"resume={ckpt.checkpoint_path(tmp_path, 5)}"])  # the newest
    assert len(list((tmp_path / "checkpoints").glob("abandoned_after_*"))) == 1  # nothing later: nothing moved
