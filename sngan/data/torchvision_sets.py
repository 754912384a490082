"""CIFAR-10, CIFAR-100 and STL-10 through torchvision: downloaded where missing, decoded into
``ImageData`` (STL-10 resized 96 -> 48 by 2x2 averaging, as in the paper)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch.nn import functional as F

from sngan.config import DatasetConfig
from sngan.data.cache import cached_images
from sngan.data.dataset import DatasetError, ImageData, check_root
from sngan.data.registry import DATASETS, Source


def missing_files_error(name: str, root: str, files: list[str], url: str, cause: BaseException) -> DatasetError:
    missing = [f for f in files if not os.path.isfile(os.path.join(root, f))]
    listed = ", ".join(missing) if missing else "none (but they failed torchvision's MD5 check)"
    return DatasetError(
        f"Dataset '{name}' could not be loaded from '{os.path.abspath(root)}': missing files: {listed}; "
        f"the automatic download failed ({type(cause).__name__}: {cause}). Download the archive from "
        f"{url} and extract it inside that folder, or point dataset.root (or the SNGAN_DATA_ROOT "
        f"environment variable) at the folder that already holds it."
    )


def archive_files(cls: Any) -> list[str]:
    """The files of a torchvision dataset's extracted archive, relative to its root."""
    files = [os.path.join(cls.base_folder, f) for f, _ in cls.train_list + cls.test_list]
    if getattr(cls, "meta", None):
        files.append(os.path.join(cls.base_folder, cls.meta["filename"]))
    return files


def load_cifar(name: str, root: str, split: str) -> ImageData:
    from torchvision import datasets

    cls = datasets.CIFAR10 if name == "cifar10" else datasets.CIFAR100
    try:
        ds = cls(root, train=(split == "train"), download=True)
    except Exception as exc:  # URLError, RuntimeError("Dataset not found or corrupted")
        raise missing_files_error(name, root, archive_files(cls), cls.url, exc) from exc
    images = torch.from_numpy(ds.data).permute(0, 3, 1, 2).contiguous()
    return ImageData(images, labels=torch.as_tensor(ds.targets, dtype=torch.int64), classes=list(ds.classes))


def load_stl10(root: str, split: str, resolution: int) -> ImageData:
    from torchvision import datasets

    cls = datasets.STL10
    try:
        ds = cls(root, split=split, download=True)
    except Exception as exc:
        raise missing_files_error("stl10", root, archive_files(cls), cls.url, exc) from exc
    data = torch.from_numpy(ds.data)  # [N, 3, 96, 96]
    labeled = "unlabeled" not in split  # the unlabeled images carry label -1
    labels = torch.as_tensor(ds.labels, dtype=torch.int64) if labeled else None
    # class_names.txt ships with the archive; without it, the ten classes are named by index
    classes = list(getattr(ds, "classes", None) or [str(i) for i in range(10)]) if labeled else None
    if data.shape[-1] == resolution:
        return ImageData(data.contiguous(), labels=labels, classes=classes)
    # The paper resizes 96 -> 48: average each 2x2 block (area), in chunks.
    out = torch.empty(len(data), 3, resolution, resolution, dtype=torch.uint8)
    for i in range(0, len(data), 4096):
        chunk = F.interpolate(data[i : i + 4096].float(), size=(resolution, resolution), mode="area")
        out[i : i + 4096] = chunk.round().clamp_(0, 255).to(torch.uint8)
    return ImageData(out, labels=labels, classes=classes)


def cifar(name: str) -> Source:
    """CIFAR-10 or CIFAR-100 (32x32, used as they are), through the cache."""

    def load(dataset: DatasetConfig, split: str) -> ImageData:
        if dataset.resolution != 32:
            raise DatasetError(
                f"{name} images are 32x32 and are used as they are, not resized, but {dataset.resolution}x"
                f"{dataset.resolution} images were asked for (dataset.resolution, or the model's resolution). Train "
                f"a 32x32 model (cnn32, resnet32) on {name}, or put resized images in a folder (dataset=folder)."
            )
        check_root(dataset.root)
        from torchvision import datasets

        files = [
            Path(dataset.root) / f for f in archive_files(datasets.CIFAR10 if name == "cifar10" else datasets.CIFAR100)
        ]
        decode = lambda: load_cifar(name, dataset.root, split)  # noqa: E731
        return cached_images(dataset.cache, Path(dataset.root), f"{name}-{split}", files, decode)

    return Source(load, resolution=32, test_split=True, title=name.upper().replace("CIFAR", "CIFAR-"))


def stl10(dataset: DatasetConfig, split: str) -> ImageData:
    """STL-10 at ``dataset.resolution`` (the paper's 48x48: 96x96 averaged over 2x2 blocks), through the cache."""
    check_root(dataset.root)
    from torchvision import datasets

    files = [Path(dataset.root) / f for f in archive_files(datasets.STL10)]
    decode = lambda: load_stl10(dataset.root, split, dataset.resolution or 48)  # noqa: E731
    return cached_images(dataset.cache, Path(dataset.root), f"stl10-{split}-{dataset.resolution}px", files, decode)


DATASETS.register("cifar10")(cifar("cifar10"))
DATASETS.register("cifar100")(cifar("cifar100"))
DATASETS.register("stl10")(
    Source(
        stl10, resolution=48, test_split=True, labelled=lambda split: "unlabeled" not in split,
        labels_hint="use dataset.split=train (5,000 labeled images)", resize="area", title="STL-10",
    )
)  # fmt: skip
