"""What every data source produces: ``ImageData``, the training images as one uint8 tensor
[N, 3, H, W] (with labels and class names where the data has them), its conversions to and from
the networks' floats in [-1, 1], and ``DatasetError``."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from pathlib import Path

import torch


class DatasetError(RuntimeError):
    """A dataset could not be read; the message says what to do about it."""


@dataclass
class ImageData:
    images: torch.Tensor  # uint8 [N, 3, H, W]
    prototypes: torch.Tensor | None = None  # float [K, 3, H, W] in [-1, 1] (synthetic only)
    labels: torch.Tensor | None = None  # int64 [N] class indices, where the data has them
    classes: list[str] | None = None  # class names, index = label
    uniform_classes: bool = False  # labels drawn uniformly by construction (synthetic)

    def subset(self, n: int, seed: int) -> ImageData:
        """``n`` of the images (with their labels), a random choice fixed by ``seed``, in their own order."""
        if n > len(self.images):
            raise DatasetError(
                f"dataset.limit={n} asks for more images than the split holds ({len(self.images)}). Use "
                f"dataset.limit={len(self.images)} or less, or null for all of them."
            )
        keep = torch.randperm(len(self.images), generator=torch.Generator().manual_seed(seed))[:n].sort().values
        labels = self.labels[keep] if self.labels is not None else None
        return replace(self, images=self.images[keep], labels=labels)

    def digest(self) -> str:
        """A digest of the images' content (and labels): a resume checks that it trains on the same images
        (the same data moved elsewhere keeps it; other images of the same count do not)."""
        h = hashlib.sha256(self.images.contiguous().numpy())  # the buffer itself, no copy
        if self.labels is not None:
            h.update(self.labels.contiguous().numpy())
        return h.hexdigest()[:16]

    def class_counts(self) -> list[int] | None:
        """Images per class, the class mix a conditional run draws its fakes' labels with; None without
        labels and where labels are uniform draws by construction (synthetic: the counts sample that mix)."""
        if self.labels is None or not self.classes or self.uniform_classes:
            return None
        return torch.bincount(self.labels, minlength=len(self.classes)).tolist()


def check_root(root: str) -> None:
    """``dataset.root`` names a folder, or a place to download into; a file there is a mistake of its own,
    which "does not exist" or a failed download would hide."""
    base = Path(root)
    if base.exists() and not base.is_dir():
        raise DatasetError(
            f"dataset.root='{base.resolve()}' is a file, not a folder. Set dataset.root to the folder that holds "
            f"the images (dataset=folder) or the dataset's files (cifar10, cifar100, stl10: downloaded into that "
            f"folder where missing)."
        )


def to_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 [0, 255] -> float [-1, 1]."""
    return images.float().div_(127.5).sub_(1.0)


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """float [-1, 1] -> uint8 [0, 255], rounding to nearest."""
    return ((images.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
