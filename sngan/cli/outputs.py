"""Output folders: prove one writable before slow work, and say clearly when it is not.

Imports nothing from sngan, so every layer (commands, scoring, the Hydra run-folder check) can use it.
"""

from __future__ import annotations

import os
from pathlib import Path


class OutputError(RuntimeError):
    """An output folder cannot be created or written."""


# The options that choose where the Hydra commands write (python -m sngan.report has --out instead).
HYDRA_OUTPUTS = "out=..., inception.stats_dir=..., hydra.run.dir=..."


def output_error(path: object, exc: OSError, options: str = HYDRA_OUTPUTS) -> str:
    return (
        f"Cannot use '{path}' ({exc.strerror or exc}). Check that its folder exists and is writable, with "
        f"free space; for outputs pick another place ({options}). Nothing else was changed."
    )


def ensure_folder(folder: Path | str, options: str = HYDRA_OUTPUTS) -> Path:
    """Create ``folder`` and prove it writable before slow work whose result would go there; ``options``:
    how the command picks another place, for the message."""
    path = Path(folder)
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".sngan_write_check_{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise OutputError(output_error(path, exc, options)) from exc
    return path
