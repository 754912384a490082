"""Image folders: which files are images, a digest of them, and their decoding into ``ImageData``
(labelled by first-level subfolder when every image lies in one)."""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch

from sngan.config import DatasetConfig
from sngan.data import cache as image_cache
from sngan.data.dataset import DatasetError, ImageData, check_root
from sngan.data.registry import DATASETS, Source

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".ppm", ".tif", ".tiff")


def folder_images(root: str) -> list[Path]:
    """Every image file under ``root`` (hidden files and folders left out), sorted."""
    base = Path(root)
    check_root(root)
    if not base.is_dir():
        raise DatasetError(
            f"Image folder '{base.resolve()}' does not exist. Set dataset.root to a folder holding "
            f"images ({', '.join(IMAGE_EXTENSIONS)}), in subfolders or not."
        )
    paths = sorted(image_files(base))
    if not paths:
        raise DatasetError(
            f"Image folder '{base.resolve()}' holds no images with extensions {', '.join(IMAGE_EXTENSIONS)}. "
            f"Point dataset.root at the folder that holds them."
        )
    return paths


def image_files(base: Path) -> Iterator[Path]:
    """Image files under ``base``, through symlinked folders too, in sorted order; a link back to a folder
    on its own path (a cycle) is not followed. Hidden files and folders (.ipynb_checkpoints,
    .sngan_cache, ...) are not data."""
    above = {os.fspath(base): ()}  # each folder: the real folders on its path
    for folder, subfolders, files in os.walk(base, followlinks=True):
        chain = (*above.pop(folder), os.path.realpath(folder))
        subfolders[:] = sorted(
            d for d in subfolders if not d.startswith(".") and os.path.realpath(os.path.join(folder, d)) not in chain
        )
        above.update((os.path.join(folder, d), chain) for d in subfolders)
        yield from (
            Path(folder, f) for f in files if not f.startswith(".") and Path(f).suffix.lower() in IMAGE_EXTENSIONS
        )


def folder_signature(root: str) -> str:
    """A digest of an image folder's file names, sizes and modification times: it changes when the
    folder's images do (a file added, removed, replaced), without decoding any."""
    return image_cache.signature(Path(root), folder_images(root)) or f"changing-{time.time_ns()}"


def load_folder(root: str, resolution: int, paths: list[Path]) -> ImageData:
    """The images ``paths`` under ``root``; labelled by first-level subfolder (sorted names) when every
    image lies in one."""
    from PIL import Image, ImageOps

    from sngan.data.images import to_rgb

    base = Path(root)

    def decode(path: Path) -> torch.Tensor:
        try:
            with Image.open(path) as img:
                fitted = ImageOps.fit(to_rgb(img), (resolution, resolution), Image.Resampling.BICUBIC)
        except OSError as exc:
            raise DatasetError(f"Cannot decode image '{path}': {exc}. Remove or replace that file.") from exc
        return torch.frombuffer(bytearray(fitted.tobytes()), dtype=torch.uint8).view(resolution, resolution, 3)

    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        images = torch.stack(list(pool.map(decode, paths))).permute(0, 3, 1, 2).contiguous()
    parts = [p.relative_to(base).parts for p in paths]
    if any(len(part) < 2 for part in parts):
        return ImageData(images)  # images directly in root: no classes
    classes = sorted({part[0] for part in parts})
    index = {name: i for i, name in enumerate(classes)}
    return ImageData(images, labels=torch.tensor([index[part[0]] for part in parts]), classes=classes)


def folder(dataset: DatasetConfig, split: str) -> ImageData:
    """Every image under ``dataset.root``, fitted to ``dataset.resolution``, through the cache."""
    paths = folder_images(dataset.root)
    decode = lambda: load_folder(dataset.root, dataset.resolution or 0, paths)  # noqa: E731
    return image_cache.cached_images(dataset.cache, Path(dataset.root), f"folder-{dataset.resolution}px", paths, decode)


def folder_tag(dataset: DatasetConfig) -> str:
    """Its place and its contents: statistics of changed images are not reused."""
    where = f"{Path(dataset.root).resolve()}\0{folder_signature(dataset.root)}"
    return f"folder-{Path(dataset.root).resolve().name}-{hashlib.sha1(where.encode()).hexdigest()[:12]}"


DATASETS.register("folder")(
    Source(
        folder, labels_hint="put the images of each class in a subfolder of {root} (one folder per class)",
        tag=folder_tag, spread=True, resize="fit",
    )
)  # fmt: skip
