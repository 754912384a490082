"""Real signals to a real training process (as a scheduler sends them)."""

import signal
import subprocess
import sys
import time

import pytest
from helpers import run_training

from sngan.utils import checkpoint as ckpt

pytestmark = pytest.mark.slow

LONG_RUN = [
    "experiment=quickstart",
    "train.steps=100000",
    "train.checkpoint_every=100000",
    "train.sample_every=100000",
    "train.eval_every=100000",
]


def start_training(run_dir, extra=(), settle=1.5):
    """The real command, returned once its training loop has run for ``settle`` seconds."""
    cmd = [sys.executable, "-m", "sngan.train", *LONG_RUN, *extra, f"hydra.run.dir={run_dir}"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not list((run_dir / "tb").glob("events.out.tfevents.*")):  # the loop is about to start
        assert proc.poll() is None and time.monotonic() < deadline, "training did not start"
        time.sleep(0.2)
    time.sleep(settle)
    return proc


def test_sigterm_finishes_the_step_saves_a_checkpoint_and_the_run_resumes(tmp_path):
    run_dir = tmp_path / "run"
    proc = start_training(run_dir)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, err[-2000:]
    assert "Received SIGTERM" in err and "resume=auto" in err and "Traceback" not in err
    latest = ckpt.find_latest(run_dir)
    step = ckpt.load(latest)["step"]
    assert step > 0
    run_training(run_dir, ["experiment=quickstart", f"train.steps={step + 2}", "resume=auto", "train.eval_samples=100"])
    assert ckpt.load(ckpt.find_latest(run_dir))["step"] == step + 2


def test_second_sigint_exits_at_once(tmp_path):
    run_dir = tmp_path / "run"
    # Wide networks, big batches, n_dis 10: one step takes seconds, so the
    # second Ctrl-C (sent once the first is acknowledged) lands inside it.
    slow = ["model.width=1.0", "train.batch_size_d=256", "train.batch_size_g=256", "train.n_dis=10"]
    proc = start_training(run_dir, slow, settle=0.5)  # inside the first step
    proc.send_signal(signal.SIGINT)
    first = ""
    while "Received SIGINT" not in first:
        first = proc.stderr.readline()
        assert first or proc.poll() is None, "no acknowledgement of the first SIGINT"
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-2000:]
    assert "Interrupted at once" in err and "Traceback" not in err


def test_ctrl_c_at_any_moment_of_the_first_seconds_gets_one_line_and_no_traceback(tmp_path):
    """Imports, Hydra, the lock, set-up, the first steps: each answers a real Ctrl-C (SIGINT) with one line, and
    so does SIGTERM (``docker stop``, ``kill``), which before the loop used to end the process without a word."""
    INT, TERM = signal.SIGINT, signal.SIGTERM
    for delay, sig in ((0.3, INT), (0.8, TERM), (1.5, INT), (3.0, TERM), (6.0, INT)):
        run_dir = tmp_path / f"after_{delay}"
        cmd = [sys.executable, "-m", "sngan.train", *LONG_RUN, "model.width=0.125", f"hydra.run.dir={run_dir}"]
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        time.sleep(delay)
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=180)
        assert proc.returncode == 128 + sig, (delay, err[-2000:])
        assert "Traceback" not in err and "KeyboardInterrupt" not in err, (delay, err[-2000:])
        assert signal.Signals(sig).name in err, (delay, err)
        assert not (run_dir / "sngan.lock").exists()  # released on this exit too


@pytest.mark.parametrize(
    "then", ["with stopping.GracefulStop():\n    work()", "from sngan.cli.errors import run_or_exit\nrun_or_exit(work)"]
)
def test_a_ctrl_c_whose_exit_library_code_swallowed_still_stops_before_the_work(then):
    """Seen in CI: the 'Stopped by SIGINT' line printed during set-up, then the run trained on, because
    the handler's SystemExit was caught by code it interrupted. The stop is kept where a command's work
    begins (run_or_exit) and where training begins (GracefulStop)."""
    script = f"""
import os, signal, sys
from sngan.training import stopping
stopping.answer_ctrl_c_from_the_start()
try:
    os.kill(os.getpid(), signal.SIGINT)
    sum(range(10000))  # the handler runs between these bytecodes
except BaseException:
    pass  # a library's bare except
print("swallowed", file=sys.stderr)
def work():
    print("worked on", file=sys.stderr)
{then}
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert out.returncode == 130, out.stderr
    assert out.stderr.count("Stopped by SIGINT: before training started") == 1, out.stderr
    assert "swallowed" in out.stderr and "worked on" not in out.stderr, out.stderr


STOPPED_WHILE_IMPORTING = """
import os, pathlib, signal, sys, time
from sngan.training import stopping
stopping.answer_ctrl_c_from_the_start(trains=False)  # as python -m sngan.<command> does
folder = pathlib.Path(sys.argv[1])
(folder / "slow_module.py").write_text(
    "import os, signal, time\\n"
    "os.kill(os.getpid(), signal.SIGTERM)\\n"  # answered here, inside the import
    "print('the import went on', flush=True)\\n"
    "time.sleep(0.3)\\n"
    "print('the import ended', flush=True)\\n"
)
sys.path.insert(0, str(folder))
import slow_module
time.sleep(5)
print('the command went on', flush=True)
"""


def test_a_stop_inside_an_import_waits_for_the_import_to_end(tmp_path):
    """A stop answered inside an import (torch's takes seconds) exits once the import is over: an exception
    raised there can cross torch's C++ start-up and abort the process (exit -6, seen once). Real signal,
    real process; the module stands in for torch."""
    done = subprocess.run([sys.executable, "-c", STOPPED_WHILE_IMPORTING, str(tmp_path)], capture_output=True,
                          text=True, timeout=60)  # fmt: skip
    assert done.returncode == 128 + signal.SIGTERM, done.stderr
    assert done.stdout.splitlines() == ["the import went on", "the import ended"], done.stdout
    assert done.stderr.strip() == "Stopped by SIGTERM: nothing was written.", done.stderr
