"""One training per run folder: a lock file that names its holder.

``RUN_FOLDER/sngan.lock`` is made with ``O_CREAT | O_EXCL`` (atomic on local disks and on NFS v3 and
newer) and holds the holder's pid, host, process start time and a random token. While the run lives a
thread touches the file every ``HEARTBEAT_S`` seconds. A second trainer for the same folder refuses at
once, naming the holder. A lock is taken over, with a note, when its holder is gone:

- same host: its pid is not running, or runs another process (pid reuse: another start time);
- another host (a cluster's shared folder): its heartbeat is older than ``STALE_S`` seconds. Its
  liveness cannot be checked from here, so a live holder whose host cannot reach the shared folder
  for that long could be taken over; with the defaults that is ten minutes of silence.

Two takers of one stale lock are serialized by a second exclusive file (``sngan.lock.takeover``), so
at most one of them wins. The lock goes on every exit Python sees (return, exception, signal that
ends the process through Python, ``sys.exit``); a killed process (SIGKILL, a lost node) leaves it,
and the next run takes it over as above. Imports only the standard library.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import secrets
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Any

LOCK_NAME = "sngan.lock"
HEARTBEAT_S = 30.0
STALE_S = 600.0

_held: dict[Path, RunLock] = {}  # folders this process holds (re-entrant: the Hydra callback, then start())


class FolderBusy(RuntimeError):
    """Another live training holds the run folder."""


def _proc_stat(pid: int) -> list[str]:
    """Fields of /proc/PID/stat after the command name (Linux; [] elsewhere): [0] the state, [19] the start
    time in clock ticks since boot, which tells a reused pid from the holder."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return []


def _start_time(pid: int) -> str | None:
    fields = _proc_stat(pid)
    return fields[19] if len(fields) > 19 else None


def _alive(holder: dict[str, Any]) -> bool:
    pid = holder.get("pid")
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: it exists
        pass
    fields = _proc_stat(pid)
    if fields[:1] == ["Z"]:  # exited, not yet reaped
        return False
    started = holder.get("started")
    return started is None or len(fields) <= 19 or fields[19] == started


def _read(path: Path) -> dict[str, Any] | None:
    """The holder recorded in a lock file; {} for a file being written or damaged; None if there is none."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    except OSError:
        return {}
    try:
        holder = json.loads(text)
    except ValueError:
        return {}
    return holder if isinstance(holder, dict) else {}


def describe(holder: dict[str, Any]) -> str:
    since = holder.get("since")
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(since)) if isinstance(since, (int, float)) else "?"
    return f"process {holder.get('pid', '?')} on host {holder.get('host', '?')} (since {when})"


class RunLock:
    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder).resolve()
        self.path = self.folder / LOCK_NAME
        self.holder = {
            "pid": os.getpid(), "host": socket.gethostname(), "started": _start_time(os.getpid()),
            "since": time.time(), "token": secrets.token_hex(8),
        }  # fmt: skip
        self.note: str | None = None  # set when a stale lock was taken over
        self._stop = threading.Event()

    def _create(self) -> bool:
        try:
            fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "w") as f:
            json.dump(self.holder, f)
            f.flush()
            os.fsync(f.fileno())
        return True

    def _stale(self, holder: dict[str, Any]) -> bool:
        """Its holder is gone. A damaged file ({}) counts as another host's: stale once silent."""
        if holder and holder.get("host") == self.holder["host"]:
            return not _alive(holder)
        try:
            age = time.time() - self.path.stat().st_mtime
        except FileNotFoundError:
            return True
        return age > STALE_S  # another host: only its heartbeat tells

    def _take_over(self, holder: dict[str, Any]) -> bool:
        """Remove a stale lock if it is still the one judged stale; only one taker at a time."""
        guard = self.folder / (LOCK_NAME + ".takeover")
        with contextlib.suppress(FileNotFoundError):
            if time.time() - guard.stat().st_mtime > 60:  # a taker that died mid-way
                guard.unlink()
        try:
            os.close(os.open(guard, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
        except FileExistsError:
            return False
        try:
            if _read(self.path) == holder:
                self.path.unlink()
                self.note = f"took over {self.path} from {describe(holder)}, which is no longer running"
            return self._create()
        finally:
            guard.unlink()

    def acquire(self) -> RunLock:
        for _ in range(50):
            if self._create():
                break
            holder = _read(self.path)
            if holder == {}:  # being written right now, or damaged: look again shortly
                time.sleep(0.2)
                holder = _read(self.path)
            if holder is None:  # released meanwhile
                continue
            if not self._stale(holder):
                raise FolderBusy(self._busy_message(holder))
            if self._take_over(holder):
                break
            time.sleep(0.1)  # another process is taking it over: look again
        else:  # pragma: no cover - a lock file that keeps changing hands
            raise FolderBusy(self._busy_message(_read(self.path) or {}))
        threading.Thread(target=self._beat, name="sngan-lock-heartbeat", daemon=True).start()
        atexit.register(self.release)
        return self

    def _busy_message(self, holder: dict[str, Any]) -> str:
        return (
            f"Another training is using the run folder {self.folder}: {describe(holder)} holds {self.path}. "
            f"Two trainings in one folder would overwrite each other's checkpoints. Wait for it to end, stop it, "
            f"or train in another folder (hydra.run.dir=...). If that process is gone (e.g. its node died), "
            f"delete {self.path} and run again; a lock of a finished process on this host, or one silent for "
            f"{STALE_S / 60:.0f} minutes, is taken over by itself."
        )

    def _beat(self) -> None:
        while not self._stop.wait(HEARTBEAT_S):
            with contextlib.suppress(OSError):
                os.utime(self.path)

    def release(self) -> None:
        self._stop.set()
        _held.pop(self.folder, None)
        with contextlib.suppress(OSError):
            if _read(self.path) == self.holder:
                self.path.unlink()


def hold(folder: Path | str) -> RunLock:
    """Hold ``folder`` for this process until it exits or ``release()`` is called (re-entrant: the Hydra
    callback takes it, then ``start()`` finds it held). A stale lock taken over is said once, here."""
    key = Path(folder).resolve()
    if key not in _held:
        _held[key] = RunLock(key).acquire()
        if _held[key].note:
            print(f"note: {_held[key].note}", file=sys.stderr)
    return _held[key]


def release(folder: Path | str) -> None:
    """Release ``folder``'s lock if this process holds it."""
    held = _held.get(Path(folder).resolve())
    if held is not None:
        held.release()
