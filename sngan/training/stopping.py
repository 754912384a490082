"""Graceful stops on SIGTERM and SIGINT, as schedulers send before preemption.

The first signal only sets ``requested``: the loop finishes its current step,
writes a checkpoint, flushes TensorBoard and exits. A second SIGINT (Ctrl-C
twice) exits at once. Handlers are installed only in the main thread and
restored on exit.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from types import FrameType
from typing import Any


class Interrupted(Exception):
    """Training stopped early on a signal, after saving a checkpoint."""

    def __init__(self, signum: int, step: int) -> None:
        super().__init__(f"stopped by {signal.Signals(signum).name} at step {step}")
        self.signum, self.step = signum, step


class TimeLimit(Exception):
    """Training stopped at train.max_minutes, after saving a checkpoint."""

    def __init__(self, minutes: float, step: int) -> None:
        super().__init__(f"stopped at train.max_minutes={minutes:g} at step {step}")
        self.minutes, self.step = minutes, step


class WallClock:
    """Time-based saving for preemptible clusters: a checkpoint every ``checkpoint_minutes`` and a clean
    stop (with a checkpoint) once ``max_minutes`` have passed, e.g. a little before a job's wall time."""

    def __init__(
        self, max_minutes: float | None, checkpoint_minutes: float | None, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.max_minutes, self.checkpoint_minutes, self.clock = max_minutes, checkpoint_minutes, clock
        self.start = self.last_save = clock()

    def out_of_time(self) -> bool:
        return self.max_minutes is not None and self.clock() - self.start >= 60 * self.max_minutes

    def save_due(self) -> bool:
        every = self.checkpoint_minutes
        return (every is not None and self.clock() - self.last_save >= 60 * every) or self.out_of_time()

    def saved(self) -> None:
        self.last_save = self.clock()


# What a Ctrl-C outside the training steps says: a function asked at the stop, set by each command with
# ``report_stops_with`` as its work goes on (what it wrote, what it did not).
BEFORE_TRAINING = "before training started: nothing was trained or saved. Run the command again to start"
STOP_REPORT: list[Callable[[], str]] = [lambda: BEFORE_TRAINING]


def report_stops_with(report: Callable[[], str]) -> None:
    """A stop outside training says "Stopped by SIGINT: <report()>." (what the command wrote, what it did not)."""
    STOP_REPORT[0] = report


# The signals _stop_outside_steps has answered. Its SystemExit can be lost in the code it interrupts (a
# bare `except`, or C code that clears errors; seen once in CI: the line printed, then the run trained
# on), so the stop it promised is also kept where a command's work begins (run_or_exit) and where
# training begins (GracefulStop).
ANSWERED: list[int] = []


def _stop_outside_steps(signum: int, frame: FrameType | None) -> None:
    # Under torchrun only rank 0 speaks: the launcher sends SIGTERM to every rank when one of them fails.
    if not ANSWERED and os.environ.get("RANK", "0") == "0":
        print(f"\nStopped by {signal.Signals(signum).name}: {STOP_REPORT[0]()}.", file=sys.stderr, flush=True)
    ANSWERED.append(signum)
    _exit_unless_importing(frame)


def _importing(frame: FrameType | None) -> bool:
    while frame is not None:
        if frame.f_code.co_filename.startswith("<frozen importlib"):
            return True
        frame = frame.f_back
    return False


def _exit_unless_importing(frame: FrameType | None) -> None:
    """Exit with the answered stop's code, or, inside an import, as soon as it is over (looked at every 50 ms).
    An exception raised inside torch's import can cross its C++ start-up and abort the process (exit -6,
    seen once in the suite with a signal 0.8 s after the start); imports change nothing on disk."""
    if _importing(frame):
        signal.signal(signal.SIGALRM, lambda _, later: _exit_unless_importing(later))
        signal.setitimer(signal.ITIMER_REAL, 0.05)
        return
    sys.exit(128 + ANSWERED[0])


def keep_an_answered_stop() -> None:
    """Exit now if a stop signal was already answered ("Stopped by SIGINT ...") but its exit was swallowed."""
    if ANSWERED:
        raise SystemExit(128 + ANSWERED[0])


def answer_ctrl_c_from_the_start(trains: bool = True) -> None:
    """Ctrl-C from the first moment (imports, Hydra, set-up) ends a command with one line and exit code 130,
    not a KeyboardInterrupt traceback; SIGTERM (``docker stop``, ``kill``, a scheduler) the same way with
    143, where it used to end the process without a word or its clean-up. The training loop's GracefulStop
    takes both over while it runs. A command that does not train (``trains=False``) says "nothing was
    written" until it reports its own outputs."""
    if not trains:
        report_stops_with(lambda: "nothing was written")
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, _stop_outside_steps)


class GracefulStop:
    """``extra``: more signals that stop the same way (a scheduler's requeue signal, e.g. SIGUSR1)."""

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self, extra: tuple[int, ...] = ()) -> None:
        self.signals = self.SIGNALS + tuple(extra)
        self.requested: int | None = None
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.requested is not None and signum == signal.SIGINT:
            signal.signal(signal.SIGINT, signal.default_int_handler)
            raise KeyboardInterrupt
        self.requested = signum
        print(
            f"\nReceived {signal.Signals(signum).name}: finishing the current step and saving a checkpoint "
            f"(press Ctrl-C again to exit at once).",
            file=sys.stderr,
            flush=True,
        )

    def __enter__(self) -> GracefulStop:
        keep_an_answered_stop()
        if threading.current_thread() is threading.main_thread():
            for sig in self.signals:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()


def requeue() -> str:
    """Put this SLURM job back in the queue (``scontrol requeue $SLURM_JOB_ID``); says what happened."""
    job = os.environ.get("SLURM_JOB_ID")
    if not job:
        return "SLURM_JOB_ID is not set, so no job was requeued; start the next job yourself."
    try:
        out = subprocess.run(["scontrol", "requeue", job], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"`scontrol requeue {job}` could not run ({exc}); requeue the job yourself."
    if out.returncode != 0:
        return f"`scontrol requeue {job}` failed ({out.stderr.strip() or out.returncode}); requeue the job yourself."
    return f"SLURM job {job} was requeued."
