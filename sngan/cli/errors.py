"""What every command does with errors: one paragraph on stderr and exit code 2, no traceback."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TypeVar

from sngan.cli.provenance import DeviceError
from sngan.cli.run_lock import FolderBusy
from sngan.config import ConfigError
from sngan.data import DatasetError
from sngan.metrics.inception import InceptionError
from sngan.metrics.reference import MetricsError
from sngan.registry import UnknownNameError
from sngan.training.stopping import keep_an_answered_stop
from sngan.utils.checkpoint import CheckpointError
from sngan.utils.memory import OutOfMemory
from sngan.utils.outputs import OutputError, ensure_folder, output_error

T = TypeVar("T")
__all__ = ["USER_ERRORS", "OutputError", "ensure_folder", "output_error", "run_or_exit"]

# Errors whose message is the whole story (what went wrong, what to do).
USER_ERRORS: tuple[type[Exception], ...] = (
    ConfigError, DatasetError, DeviceError, CheckpointError, InceptionError, MetricsError, OutputError, FolderBusy,
    OutOfMemory, UnknownNameError,
)  # fmt: skip


def run_or_exit(body: Callable[[], T], *more: type[Exception]) -> T:
    """Run a command body; user errors (and ``more``) and failed writes end the process with exit code 2.
    A Ctrl-C already answered while the command started ("Stopped by SIGINT ...") ends it here, should its
    exit have been lost."""
    keep_an_answered_stop()
    try:
        return body()
    except (*USER_ERRORS, *more) as exc:
        print(f"error: {exc}", file=sys.stderr)
    except OSError as exc:  # an output folder that is read-only or full
        print(f"error: {output_error(exc.filename or '?', exc)}", file=sys.stderr)
    sys.exit(2)
