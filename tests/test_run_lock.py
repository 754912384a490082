"""One training per run folder (sngan/cli/run_lock.py): a second trainer is refused at once and changes
nothing; the lock goes on every exit; a dead holder's lock is taken over, by one taker only."""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import TINY

from sngan.cli import run_lock
from sngan.cli.run_lock import LOCK_NAME, FolderBusy, RunLock

CLI = [sys.executable, "-m", "sngan.train", *TINY, "train.log_every=50", "train.sample_every=100000",
       "train.eval_every=100000", "train.checkpoint_every=100000", "train.monitor_every=null"]  # fmt: skip


def wait_for(condition, seconds: float = 120.0) -> None:
    end = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < end, "timed out"
        time.sleep(0.1)


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def write_lock(folder: Path, **holder) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK_NAME
    path.write_text(json.dumps({"since": time.time(), "token": "x", **holder}))
    return path


@pytest.mark.slow
def test_a_second_training_in_the_same_folder_is_refused_and_changes_nothing(tmp_path):
    folder = tmp_path / "run"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    first = subprocess.Popen([*CLI, "train.steps=100000", f"hydra.run.dir={folder}"], cwd=tmp_path, env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        wait_for(lambda: (folder / "config.yaml").is_file() or first.poll() is not None)
        assert first.poll() is None, first.communicate()
        holder = json.loads((folder / LOCK_NAME).read_text())
        assert holder["pid"] == first.pid
        before = {p: p.read_bytes() for p in folder.rglob("*") if p.is_file() and p.name != LOCK_NAME}
        second = subprocess.run([*CLI, "seed=1", "train.steps=2", f"hydra.run.dir={folder}"], cwd=tmp_path,
                                capture_output=True, text=True, timeout=300)  # fmt: skip
        assert second.returncode == 2, second.stderr
        assert "Another training is using the run folder" in second.stderr and f"process {first.pid}" in second.stderr
        assert "Traceback" not in second.stderr
        for path, content in before.items():  # .hydra/, config.yaml, the log: all still the first run's
            assert path.read_bytes() == content or path.suffix in (".jsonl", ".log") or "tfevents" in path.name
        assert "seed=1" not in (folder / ".hydra" / "overrides.yaml").read_text()
    finally:
        first.send_signal(signal.SIGINT)  # a graceful stop: a checkpoint, then the lock goes
        out, err = first.communicate(timeout=300)
    assert first.returncode == 130, err
    assert not (folder / LOCK_NAME).exists()
    assert list((folder / "checkpoints").glob("ckpt_*.pt"))  # the stop saved the first run


def test_the_lock_of_a_finished_process_on_this_host_is_taken_over_with_a_note(tmp_path):
    write_lock(tmp_path, pid=dead_pid(), host=RunLock(tmp_path).holder["host"])
    lock = RunLock(tmp_path).acquire()
    try:
        assert "no longer running" in lock.note
        assert json.loads((tmp_path / LOCK_NAME).read_text())["pid"] == os.getpid()
    finally:
        lock.release()
    assert not (tmp_path / LOCK_NAME).exists()


def test_a_reused_pid_does_not_keep_a_lock(tmp_path):
    # A live pid (this process) whose start time differs from the holder's: another process now.
    write_lock(tmp_path, pid=os.getpid(), host=RunLock(tmp_path).holder["host"], started="1")
    lock = RunLock(tmp_path).acquire()
    lock.release()
    assert lock.note is not None


def test_a_live_holder_on_this_host_keeps_its_lock(tmp_path):
    holder = RunLock(tmp_path).holder | {"pid": os.getppid(), "started": None}
    write_lock(tmp_path, **holder)
    with pytest.raises(FolderBusy, match=f"process {os.getppid()} on host"):
        RunLock(tmp_path).acquire()


def test_another_hosts_lock_is_kept_while_it_beats_and_taken_over_when_silent(tmp_path):
    path = write_lock(tmp_path, pid=1, host="node-elsewhere")
    with pytest.raises(FolderBusy, match="node-elsewhere") as refused:
        RunLock(tmp_path).acquire()
    assert str(path) in str(refused.value) and "delete" in str(refused.value)  # what to do if it is gone
    old = time.time() - run_lock.STALE_S - 5
    os.utime(path, (old, old))
    lock = RunLock(tmp_path).acquire()
    lock.release()
    assert "node-elsewhere" in lock.note


def test_the_heartbeat_keeps_the_lock_fresh_and_release_leaves_anothers_lock(tmp_path, monkeypatch):
    monkeypatch.setattr(run_lock, "HEARTBEAT_S", 0.05)
    lock = RunLock(tmp_path).acquire()
    old = time.time() - 1000
    os.utime(lock.path, (old, old))
    wait_for(lambda: time.time() - lock.path.stat().st_mtime < 100, seconds=10)
    lock.path.write_text(json.dumps({"pid": 1, "host": "other"}))  # someone deleted ours and took the folder
    lock.release()
    assert lock.path.is_file()  # theirs stays


def _try_hold(folder: str, results) -> None:
    try:
        lock = RunLock(Path(folder)).acquire()
        results.put("won")
        time.sleep(2.0)  # hold it while the others try
        lock.release()  # multiprocessing's children end without atexit
    except FolderBusy:
        results.put("refused")


@pytest.mark.slow
def test_of_several_takers_of_a_dead_lock_exactly_one_wins(tmp_path):
    write_lock(tmp_path, pid=dead_pid(), host=RunLock(tmp_path).holder["host"])
    ctx = multiprocessing.get_context("spawn")
    results = ctx.Queue()
    procs = [ctx.Process(target=_try_hold, args=(str(tmp_path), results)) for _ in range(4)]
    for p in procs:
        p.start()
    outcomes = sorted(results.get(timeout=120) for _ in procs)
    for p in procs:
        p.join(timeout=60)
    assert outcomes == ["refused", "refused", "refused", "won"]
    assert not (tmp_path / LOCK_NAME).exists()  # the winner released it on exit
