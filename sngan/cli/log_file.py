"""A copy of what a command prints, in a file: the run folder's ``train.log`` tells the run's story after
the fact (progress lines, notes, warnings, errors). Writes that redraw a terminal's progress bar (they
carry a carriage return) stay on the terminal; ``Progress`` sends its plain line to the file instead."""

from __future__ import annotations

import contextlib
import sys
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any


class Copied:
    """A text stream that writes to ``stream`` and appends to ``file``."""

    def __init__(self, stream: IO[str], file: IO[str]) -> None:
        self.stream, self.file = stream, file

    def write(self, text: str) -> int:
        if "\r" not in text:
            self.to_file(text)
        return self.stream.write(text)

    def to_file(self, text: str) -> None:
        with contextlib.suppress(OSError, ValueError):  # a full disk costs the copy, never the run
            self.file.write(text)
            self.file.flush()

    def flush(self) -> None:
        self.stream.flush()

    def isatty(self) -> bool:
        return self.stream.isatty()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.stream, name)


@contextlib.contextmanager
def copied_to(path: Path, enabled: bool = True) -> Iterator[None]:
    """Copy stdout and stderr to ``path`` (appended: a resumed run continues its log) while the block runs."""
    if not enabled:
        yield
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        file = open(path, "a", encoding="utf-8")  # noqa: SIM115
    except OSError as exc:
        print(f"warning: cannot write {path} ({exc}); the run's output goes to the terminal only", file=sys.stderr)
        yield
        return
    out, err = sys.stdout, sys.stderr
    copied_err = Copied(err, file)
    sys.stdout, sys.stderr = Copied(out, file), copied_err  # type: ignore[assignment]
    try:
        yield
    except Exception:  # a crash: Python prints its traceback after this block, to the terminal alone
        copied_err.to_file(traceback.format_exc())
        raise
    finally:
        sys.stdout, sys.stderr = out, err
        file.close()
