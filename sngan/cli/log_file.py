"""A copy of what a command prints, in a file: the run folder's ``train.log`` tells the run's story after
the fact (progress lines, notes, warnings, errors). Writes that redraw a terminal's progress bar (they
carry a carriage return) stay on the terminal; ``Progress`` sends its plain line to the file instead."""

from __future__ import annotations

import contextlib
import os
import sys
import traceback
from collections.abc import Callable, Iterator
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


class HeldFile:
    """A log file that is opened only when ``commit()`` is called; what is written before waits in memory and
    is dropped if the file is never committed (a refused start leaves the run folder's log as it was)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.pending: list[str] = []
        self.file: IO[str] | None = None

    def write(self, text: str) -> int:
        if self.file is None:
            self.pending.append(text)
            return len(text)
        return self.file.write(text)

    def flush(self) -> None:
        if self.file is not None:
            self.file.flush()

    def commit(self) -> None:
        if self.file is not None:
            return
        try:
            self.file = open(self.path, "a", encoding="utf-8")  # noqa: SIM115
        except OSError as exc:
            print(f"warning: cannot write {self.path} ({exc}); the run's output goes to the terminal only",
                  file=sys.stderr)  # fmt: skip
            self.file = open(os.devnull, "w")  # noqa: SIM115
        self.file.write("".join(self.pending))
        self.file.flush()
        self.pending.clear()

    def close(self) -> None:
        if self.file is not None:
            self.file.close()


@contextlib.contextmanager
def copied_to(path: Path, enabled: bool = True, held: bool = False) -> Iterator[Callable[[], None]]:
    """Copy stdout and stderr to ``path`` (appended: a resumed run continues its log) while the block runs.
    Yields ``commit``: with ``held``, nothing reaches the file until it is called (a crash calls it too);
    without, it does nothing."""
    if not enabled:
        yield lambda: None
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        file: IO[str] | HeldFile = HeldFile(path) if held else open(path, "a", encoding="utf-8")  # noqa: SIM115
    except OSError as exc:
        print(f"warning: cannot write {path} ({exc}); the run's output goes to the terminal only", file=sys.stderr)
        yield lambda: None
        return
    commit = file.commit if isinstance(file, HeldFile) else lambda: None
    out, err = sys.stdout, sys.stderr
    copied_err = Copied(err, file)  # type: ignore[arg-type]
    sys.stdout, sys.stderr = Copied(out, file), copied_err  # type: ignore[assignment,arg-type]
    try:
        yield commit
    except Exception:  # a crash: Python prints its traceback after this block, to the terminal alone
        commit()
        copied_err.to_file(traceback.format_exc())
        raise
    finally:
        sys.stdout, sys.stderr = out, err
        file.close()
