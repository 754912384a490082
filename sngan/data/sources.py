"""Which source a dataset name reads from, and the on-disk cache in front of it.

Every dataset is decoded once into memory (CIFAR-10/100 hold 150 MB, STL-10's
unlabeled split at 48x48 690 MB) and, unless dataset.cache=false, kept on disk
beside the data in ``<root>/.sngan_cache/`` as that tensor: later runs load it
instead of decoding again (an image folder is decoded again when any file in it
changes).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from sngan.data import cache as image_cache
from sngan.data import folders
from sngan.data.dataset import DatasetError, ImageData, check_root
from sngan.data.synthetic import make_synthetic
from sngan.data.torchvision_sets import NATIVE_RESOLUTION, archive_files, load_cifar, load_stl10

DATASETS = ("cifar10", "cifar100", "stl10", "folder", "synthetic")


def _cached(enabled: bool, base: Path, key: str, files: list[Path], decode: Callable[[], ImageData]) -> ImageData:
    def fields() -> dict[str, Any]:
        data = decode()
        return {"images": data.images, "labels": data.labels, "classes": data.classes}

    return ImageData(**image_cache.cached(enabled, base, key, files, fields))


def load_images(
    name: str,
    root: str,
    resolution: int,
    split: str = "train",
    synthetic_size: int = 10000,
    synthetic_modes: int = 10,
    synthetic_seed: int = 0,
    cache: bool = False,
) -> ImageData:
    """Decode dataset ``name`` into memory at ``resolution`` (``cache``: through the on-disk cache)."""
    base = Path(root)
    if name == "synthetic":
        return make_synthetic(synthetic_size, resolution, synthetic_modes, synthetic_seed)
    check_root(root)
    if name in ("cifar10", "cifar100"):
        if resolution != NATIVE_RESOLUTION[name]:
            raise DatasetError(
                f"{name} images are 32x32 and are used as they are, not resized, but {resolution}x{resolution} "
                f"images were asked for (dataset.resolution, or the model's resolution). Train a 32x32 model "
                f"(cnn32, resnet32) on {name}, or put resized images in a folder (dataset=folder)."
            )
        from torchvision import datasets

        files = [base / f for f in archive_files(datasets.CIFAR10 if name == "cifar10" else datasets.CIFAR100)]
        return _cached(cache, base, f"{name}-{split}", files, lambda: load_cifar(name, root, split))
    if name == "stl10":
        from torchvision import datasets

        files = [base / f for f in archive_files(datasets.STL10)]
        return _cached(cache, base, f"stl10-{split}-{resolution}px", files, lambda: load_stl10(root, split, resolution))
    if name == "folder":
        paths = folders.folder_images(root)
        load = lambda: folders.load_folder(root, resolution, paths)  # noqa: E731
        return _cached(cache, base, f"folder-{resolution}px", paths, load)
    raise DatasetError(f"unknown dataset '{name}'; choose one of {', '.join(DATASETS)}")
