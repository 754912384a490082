"""Decoded datasets kept on disk beside the data: ``<root>/.sngan_cache/<key>-<signature>.pt``.

The signature digests the source files' names, sizes and modification times, so a changed file means
a new decode (and the stale cache file is removed). The file is a weights-only torch archive written
atomically; an unreadable one is decoded again and replaced, and a folder that cannot be written (a
read-only volume, a full disk) costs a warning, not the run.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from sngan.data.dataset import ImageData

CACHE_DIR = ".sngan_cache"  # hidden: an image folder's own cache is not taken for images
CACHE_FORMAT = 2  # 2: folder images upright (EXIF), 16-bit scaled, transparency on white


def signature(base: Path, files: list[Path]) -> str | None:
    """A digest of the source files' names, sizes and modification times (None if one is missing)."""
    digest = hashlib.sha256()
    for f in files:
        try:
            st = f.stat()
        except OSError:
            return None
        digest.update(f"{f.relative_to(base)}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:16]


def _read_cache(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        if state.get("format") != CACHE_FORMAT:
            return None
        return {key: state[key] for key in ("images", "labels", "classes")}
    except Exception as exc:  # truncated or corrupt: decode again and replace it
        print(f"warning: ignoring the unreadable dataset cache {path} ({exc}); decoding the images again.",
              file=sys.stderr)  # fmt: skip
        return None


def _write_cache(path: Path, fields: dict[str, Any]) -> None:
    state = {"format": CACHE_FORMAT, **fields}
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")  # unique per writer
        tmp = Path(name)
        with os.fdopen(handle, "wb") as f:
            torch.save(state, f)
        os.replace(tmp, path)
        tmp = None
    except (OSError, RuntimeError) as exc:  # a read-only data volume, a full disk: train without the cache
        print(f"warning: could not write the dataset cache {path} ({exc}); the images are decoded again on each "
              f"run. Make the folder writable or set dataset.cache=false.", file=sys.stderr)  # fmt: skip
        return
    finally:  # also when interrupted: no half-written file stays behind
        if tmp is not None:
            with contextlib.suppress(OSError):
                tmp.unlink()
    for stale in path.parent.glob(path.name.rsplit("-", 1)[0] + "-*.pt"):  # the same data before a change
        if stale != path:
            stale.unlink(missing_ok=True)


def cached(
    enabled: bool, base: Path, key: str, files: list[Path], decode: Callable[[], dict[str, Any]]
) -> dict[str, Any]:
    """``decode()``, or the tensor it made last time for the same ``files`` (names, sizes, times)."""
    if not enabled:
        return decode()
    digest = signature(base, files)
    if digest is not None:
        found = _read_cache(base / CACHE_DIR / f"{key}-{digest}.pt")
        if found is not None:
            return found
    data = decode()
    if digest is None:  # the files are there now (a download)
        digest = signature(base, files)
    if digest is not None:
        _write_cache(base / CACHE_DIR / f"{key}-{digest}.pt", data)
    return data


def cached_images(enabled: bool, base: Path, key: str, files: list[Path], decode: Callable[[], ImageData]) -> ImageData:
    """``decode()``'s images, labels and classes, through the cache under ``base`` where ``enabled``."""

    def fields() -> dict[str, Any]:
        data = decode()
        return {"images": data.images, "labels": data.labels, "classes": data.classes}

    return ImageData(**cached(enabled, base, key, files, fields))
