"""Graceful stops on SIGTERM and SIGINT, as schedulers send before preemption.

The first signal only sets ``requested``: the loop finishes its current step,
writes a checkpoint, flushes TensorBoard and exits. A second SIGINT (Ctrl-C
twice) exits at once. Handlers are installed only in the main thread and
restored on exit.
"""

from __future__ import annotations

import signal
import sys
import threading
from types import FrameType
from typing import Any


class Interrupted(Exception):
    """Training stopped early on a signal, after saving a checkpoint."""

    def __init__(self, signum: int, step: int) -> None:
        super().__init__(f"stopped by {signal.Signals(signum).name} at step {step}")
        self.signum, self.step = signum, step


class GracefulStop:
    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self) -> None:
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
        if threading.current_thread() is threading.main_thread():
            for sig in self.SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()
