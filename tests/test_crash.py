"""kill -9 inside a save and a full disk while saving: the newest checkpoint
with a final name always loads, and a failed write keeps the previous one."""

import resource
import signal
import subprocess
import sys
import time

import pytest

from sngan.utils import checkpoint as ckpt

pytestmark = pytest.mark.slow

# ``python -m sngan.train`` with 0.3 s between writing a checkpoint and renaming it into place: the
# window a kill -9 lands in (the child patches os.replace for files named *.tmp).
SLOW_RENAME = """
import os, sys, time
real_replace = os.replace
def slow_replace(src, dst, **kw):
    if str(src).endswith(".tmp"):
        time.sleep(0.3)
    return real_replace(src, dst, **kw)
os.replace = slow_replace
from sngan.train import launch
launch()
"""


def saved_after(run_dir, step):
    latest = ckpt.find_latest(run_dir)
    return latest is not None and int(latest.stem.split("_")[1]) > step


def test_kill_9_inside_saves_never_leaves_the_run_without_a_loadable_newest_checkpoint(tmp_path):
    run_dir = tmp_path / "run"
    base = [sys.executable, "-c", SLOW_RENAME, "experiment=quickstart", "train.steps=100000",
            "train.checkpoint_every=1", "train.sample_every=100000", "train.eval_every=100000",
            "train.keep_checkpoints=2", f"hydra.run.dir={run_dir}"]  # fmt: skip
    steps = [0]
    for attempt in range(4):  # a fresh start, then three resumes of a run killed inside a save
        cmd = base + (["resume=auto"] if attempt else [])
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        folder = run_dir / ckpt.CHECKPOINT_DIR
        deadline = time.monotonic() + 120
        # Kill once this process has saved a checkpoint of its own and the next save is under way.
        while not (saved_after(run_dir, steps[-1]) and any(p.suffix == ".tmp" for p in folder.iterdir())):
            assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
            assert time.monotonic() < deadline, "no save started"
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)  # inside save_atomic, between write and rename
        proc.wait(timeout=60)
        proc.stderr.close()
        newest = ckpt.find_latest(run_dir)
        assert newest is not None, f"attempt {attempt}: no checkpoint"
        steps.append(ckpt.load(newest)["step"])  # the newest by name loads
    assert all(b > a for a, b in zip(steps, steps[1:])), steps  # every restart resumed and progressed


def test_disk_full_while_saving_keeps_the_previous_checkpoint(tmp_path):
    good = ckpt.save_atomic({"format_version": 1, "step": 1}, ckpt.checkpoint_path(tmp_path, 1))
    code = (
        "import sys, torch\n"
        "from pathlib import Path\n"
        "from sngan.utils import checkpoint as ckpt\n"
        "try:\n"
        f"    ckpt.save_atomic({{'format_version': 1, 'w': torch.zeros(1_000_000)}}, "
        f"ckpt.checkpoint_path(Path({str(tmp_path)!r}), 2), keep=1)\n"
        "except ckpt.CheckpointError as exc:\n"
        "    print(exc, file=sys.stderr); sys.exit(3)\n"
    )

    def limit_file_size():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # make the write fail with EFBIG, not kill
        resource.setrlimit(resource.RLIMIT_FSIZE, (1_000_000, 1_000_000))

    proc = subprocess.run([sys.executable, "-c", code], preexec_fn=limit_file_size, capture_output=True, text=True)
    assert proc.returncode == 3, proc.stderr[-2000:]
    assert "Could not write checkpoint" in proc.stderr and "File too large" in proc.stderr
    assert "earlier checkpoints are untouched" in proc.stderr
    assert ckpt.load(good)["step"] == 1
    assert [p.name for p in ckpt.list_checkpoints(tmp_path)] == [good.name]
    assert not [p for p in good.parent.iterdir() if p.suffix == ".tmp"]
