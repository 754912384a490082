"""Output folders: prove one writable before slow work, and say clearly when it is not.

Imports nothing from sngan, so every layer (commands, scoring, the Hydra run-folder check) can use it.
"""

from __future__ import annotations

import os
from pathlib import Path


class OutputError(RuntimeError):
    """An output folder cannot be created or written."""


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
