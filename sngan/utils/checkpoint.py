"""Checkpoints: atomic writes, safe loads, newest-first discovery.

A checkpoint is a plain dict (tensors, numbers, strings, plain containers)
so that ``torch.load(weights_only=True)`` reads it without running code.
Files are named ``ckpt_<step>.pt`` inside ``<run>/checkpoints``.
"""

from __future__ import annotations

import contextlib
import os
import random
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

FORMAT_VERSION = 1
CHECKPOINT_DIR = "checkpoints"
_NAME = re.compile(r"^ckpt_(\d+)\.pt$")


class CheckpointError(RuntimeError):
    """A checkpoint could not be written or read; the message names the file."""


def checkpoint_path(run_dir: Path, step: int) -> Path:
    return Path(run_dir) / CHECKPOINT_DIR / f"ckpt_{step:08d}.pt"


def list_checkpoints(run_dir: Path) -> list[Path]:
    """Checkpoints of a run, oldest first (by step, not by file time)."""
    folder = Path(run_dir) / CHECKPOINT_DIR
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := _NAME.match(p.name))]
    return [p for _, p in sorted(found)]


def step_of(path: Path) -> int:
    """The step in a rolling checkpoint's name (ckpt_<step>.pt)."""
    match = _NAME.match(Path(path).name)
    if match is None:
        raise ValueError(f"'{path}' is not named ckpt_<step>.pt")
    return int(match.group(1))


def find_latest(run_dir: Path) -> Path | None:
    ckpts = list_checkpoints(run_dir)
    return ckpts[-1] if ckpts else None


def save_atomic(state: dict[str, Any], path: Path, keep: int | None = None) -> Path:
    """Write ``state`` to ``path`` via a temporary file, fsync and rename, so a
    crash leaves either the old file set or the new one, never a torn file.
    With ``keep``, older checkpoints beyond the newest ``keep`` are deleted
    (only after the new one is safely in place)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except (OSError, RuntimeError) as exc:  # torch.save reports a failed write as RuntimeError
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise CheckpointError(
            f"Could not write checkpoint '{path}': {_write_failure(exc)}. Free disk space or make the "
            f"folder writable (hydra.run.dir=... picks another); earlier checkpoints are untouched."
        ) from exc
    if keep is not None:
        for old in list_checkpoints(path.parent.parent)[:-keep]:
            if old != path:
                old.unlink(missing_ok=True)
    return path


def _write_failure(exc: BaseException) -> str:
    """The OS-level reason behind a failed write (torch wraps it in a RuntimeError)."""
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, OSError):
            return cause.strerror or str(cause)
        cause = cause.__context__ or cause.__cause__
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


MISSING_HINT = f"Check the path: a run's checkpoints are <run>/{CHECKPOINT_DIR}/ckpt_<step>.pt and best.pt."


def load(path: Path, missing_hint: str = MISSING_HINT) -> dict[str, Any]:
    """Load a checkpoint on the CPU with ``weights_only=True``; ``missing_hint`` ends the message for a path
    that does not exist (what this command accepts instead)."""
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(
            f"'{path}' is a folder, not a checkpoint file. Pass one of its checkpoints, e.g. "
            f"{path / CHECKPOINT_DIR / 'best.pt'} or the newest {path / CHECKPOINT_DIR}/ckpt_<step>.pt."
        )
    if not path.is_file():
        raise CheckpointError(f"Checkpoint '{path}' does not exist. {missing_hint}")
    if is_export(path):
        raise CheckpointError(
            f"'{path}' is a generator exported by python -m sngan.export, not a training checkpoint: it holds "
            f"only the generator's weights. Resuming (resume=), evaluating and exporting need a training "
            f"checkpoint, <run>/{CHECKPOINT_DIR}/ckpt_<step>.pt or best.pt; to draw images from this export use "
            f"python -m sngan.sample ckpt={path} or sngan.load_generator('{path}') (its .json beside it)."
        )
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated zip, pickled code refused, ...
        raise CheckpointError(_unreadable(path, exc)) from exc
    if not isinstance(state, dict) or state.get("format_version") != FORMAT_VERSION:
        version = state.get("format_version") if isinstance(state, dict) else None
        raise CheckpointError(
            f"Checkpoint '{path}' has format version {version!r}; this sngan reads version "
            f"{FORMAT_VERSION}. Use the sngan release that wrote it."
        )
    return state


def is_export(path: Path) -> bool:
    """Whether ``path`` is a safetensors file (what python -m sngan.export writes): by its name, or by its
    header (an 8-byte little-endian length, then a JSON object), so that a renamed export is known too.
    Checkpoints are zip files ("PK...") and never look like that."""
    if Path(path).suffix == ".safetensors":
        return True
    try:
        with open(path, "rb") as f:
            head = f.read(9)
        size = os.path.getsize(path)
    except OSError:
        return False
    return len(head) == 9 and head[8:9] == b"{" and 0 < int.from_bytes(head[:8], "little") < size


def _unreadable(path: Path, exc: BaseException) -> str:
    """Why ``torch.load`` failed, in sngan's words. A weights-only refusal is never quoted: torch's text
    advises loading with weights_only=False, which would run whatever code the file holds."""
    text = str(exc)
    if "Weights only load failed" in text or "WeightsUnpickler" in text:
        named = re.search(r"Unsupported global: GLOBAL ([\w.]+)", text)
        what = f" ({named.group(1)})" if named else ""
        return (
            f"Checkpoint '{path}' cannot be read safely: it holds code or Python objects{what} that an sngan "
            f"checkpoint never holds, so it is refused for safety and nothing in it was run. It was not "
            f"written by sngan, or was altered since; use a checkpoint from a run you trust "
            f"(<run>/{CHECKPOINT_DIR}/ckpt_<step>.pt)."
        )
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()] or [type(exc).__name__]
    return (
        f"Checkpoint '{path}' cannot be read ({lines[0]}). It may be truncated or not an sngan "
        f"checkpoint; resume from an earlier one in the same folder."
    )


# ----------------------------------------------------------------- RNG state


def rng_state() -> dict[str, Any]:
    """Every global RNG: Python, NumPy (as plain values), torch CPU and CUDA."""
    np_state = np.random.get_state(legacy=False)
    return {
        "python": random.getstate(),
        "numpy": {
            "key": torch.from_numpy(np_state["state"]["key"].astype(np.int64)),
            "pos": int(np_state["state"]["pos"]),
            "has_gauss": int(np_state["has_gauss"]),
            "gauss": float(np_state["gauss"]),
        },
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np_state = state["numpy"]
    np.random.set_state(
        {
            "bit_generator": "MT19937",
            "state": {"key": np_state["key"].numpy().astype(np.uint32), "pos": np_state["pos"]},
            "has_gauss": np_state["has_gauss"],
            "gauss": np_state["gauss"],
        }
    )
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"][: torch.cuda.device_count()])
