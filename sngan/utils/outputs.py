"""Output folders: prove one writable before slow work, and say clearly when it is not.

Imports nothing from sngan, so every layer (commands, scoring, the Hydra run-folder check) can use it.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO


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


def write_atomic(path: Path | str, write: Callable[[BinaryIO], object]) -> Path:
    """``write(file)`` into a temporary file beside ``path``, renamed over it: a crash, a Ctrl-C or a full disk
    leaves the old file whole and never a partial one under the final name; the temporary file is removed on
    failure. A failed write raises OSError naming ``path`` (not the temporary file, nor none: EFBIG has no name)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            write(f)
        os.replace(tmp, path)
    except OSError as exc:
        raise named(exc, path) from exc
    finally:
        tmp.unlink(missing_ok=True)
    return path


def write_text(path: Path | str, text: str) -> Path:
    """``text`` (UTF-8) written to ``path`` atomically (``write_atomic``)."""
    return write_atomic(path, lambda f: f.write(text.encode("utf-8")))


def named(exc: OSError, path: Path) -> OSError:
    """``exc`` as the same kind of OSError naming ``path``, the file the user asked for."""
    return OSError(exc.errno, exc.strerror or str(exc), str(path))


Stamp = dict[Path, tuple[int, int] | None]


def stamp(paths: list[Path]) -> Stamp:
    """Each path's (size, modification time), None where it does not exist: to tell later what changed."""
    found: Stamp = {}
    for path in paths:
        try:
            st = path.stat()
            found[path] = (st.st_size, st.st_mtime_ns)
        except OSError:
            found[path] = None
    return found


def changed_since(before: Stamp) -> list[Path]:
    """The paths of ``before`` that were written (or removed) since."""
    now = stamp(list(before))
    return [path for path in before if now[path] != before[path]]


def written_report(before: Stamp) -> str:
    """What a stop leaves of the files of ``before``, each written atomically (whole, or not at all)."""
    done = changed_since(before)
    if not done:
        return "nothing was written"
    return " and ".join(map(str, done)) + (" were" if len(done) > 1 else " was") + " written, complete"
