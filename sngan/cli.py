"""What every command does with errors: one paragraph on stderr and exit code 2, no traceback."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from sngan.checkpoint import CheckpointError
from sngan.config import ConfigError
from sngan.data import DatasetError
from sngan.metrics.inception import InceptionError
from sngan.provenance import DeviceError
from sngan.scoring import MetricsError

T = TypeVar("T")


class OutputError(RuntimeError):
    """An output folder cannot be created or written."""


# Errors whose message is the whole story (what went wrong, what to do).
USER_ERRORS: tuple[type[Exception], ...] = (
    ConfigError, DatasetError, DeviceError, CheckpointError, InceptionError, MetricsError, OutputError,
)  # fmt: skip


def output_error(path: object, exc: OSError) -> str:
    return (
        f"Cannot use '{path}' ({exc.strerror or exc}). Check that its folder exists and is writable, with "
        f"free space; for outputs pick another place (out=..., inception.stats_dir=..., hydra.run.dir=...). "
        f"Nothing else was changed."
    )


def ensure_folder(folder: Path | str) -> Path:
    """Create ``folder`` and prove it writable before slow work whose result would go there."""
    path = Path(folder)
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".sngan_write_check_{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise OutputError(output_error(path, exc)) from exc
    return path


def run_or_exit(body: Callable[[], T], *more: type[Exception]) -> T:
    """Run a command body; user errors (and ``more``) and failed writes end the process with exit code 2."""
    try:
        return body()
    except (*USER_ERRORS, *more) as exc:
        print(f"error: {exc}", file=sys.stderr)
    except OSError as exc:  # an output folder that is read-only or full
        print(f"error: {output_error(exc.filename or '?', exc)}", file=sys.stderr)
    sys.exit(2)
