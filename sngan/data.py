"""Training images as one uint8 tensor [N, 3, H, W], and batches drawn from it.

Every dataset is decoded once into memory (CIFAR-10/100 hold 150 MB, STL-10's
unlabeled split at 48x48 690 MB) and, unless dataset.cache=false, kept on disk
beside the data in ``<root>/.sngan_cache/`` as that tensor: later runs load it
instead of decoding again (an image folder is decoded again when any file in it
changes). Batches are drawn by ``BatchSampler``, whose whole state
(permutation, position, generator) goes into checkpoints so a resumed run
continues the data order where it stopped. On a GPU the uint8 images can live
on the device (``BatchSampler.place``): a batch is then gathered, flipped and
converted there, with no host work but drawing 64 indices. Images reach the
networks as float tensors in [-1, 1] through ``to_float``.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.nn import functional as F

from sngan import image_cache
from sngan.distributed import shard

NATIVE_RESOLUTION = {"cifar10": 32, "cifar100": 32, "stl10": 48}
DATASETS = ("cifar10", "cifar100", "stl10", "folder", "synthetic")


class DatasetError(RuntimeError):
    """A dataset could not be read; the message says what to do about it."""


@dataclass
class ImageData:
    images: torch.Tensor  # uint8 [N, 3, H, W]
    prototypes: torch.Tensor | None = None  # float [K, 3, H, W] in [-1, 1] (synthetic only)
    labels: torch.Tensor | None = None  # int64 [N] class indices, where the data has them
    classes: list[str] | None = None  # class names, index = label
    uniform_classes: bool = False  # labels drawn uniformly by construction (synthetic)

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


# ----------------------------------------------------------------- synthetic


def make_prototypes(k: int, resolution: int, seed: int) -> torch.Tensor:
    """K smooth random colour fields in [-0.9, 0.9], each with pixel std >= 0.3
    and pairwise RMS distance >= 0.5; redrawn (seeded) until both hold."""
    gen = torch.Generator().manual_seed(seed)
    for _ in range(1000):
        coarse = torch.randn(k, 3, 4, 4, generator=gen)
        protos = F.interpolate(coarse, size=(resolution, resolution), mode="bicubic", align_corners=False)
        protos = protos - protos.mean(dim=(1, 2, 3), keepdim=True)
        protos = (0.5 * protos / protos.std(dim=(1, 2, 3), keepdim=True)).clamp(-0.9, 0.9)
        flat = protos.flatten(1)
        pair = torch.cdist(flat, flat) / flat.shape[1] ** 0.5 + 10 * torch.eye(k)
        if protos.flatten(1).std(dim=1).min() >= 0.3 and pair.min() >= 0.5:
            return protos
    raise RuntimeError("could not draw well-separated prototypes")  # pragma: no cover


def make_synthetic(n: int, resolution: int, k: int = 10, seed: int = 0, shift: float = 0.1) -> ImageData:
    """N images, each a prototype (uniformly chosen) plus a global colour shift
    drawn uniformly from [-shift, shift] per channel: a one-parameter-per-
    channel variation, small against the 0.25 'good' radius."""
    protos = make_prototypes(k, resolution, seed)
    gen = torch.Generator().manual_seed(seed + 1)
    labels = torch.randint(0, k, (n,), generator=gen)
    shifts = (torch.rand(n, 3, 1, 1, generator=gen) * 2 - 1) * shift
    names = [f"prototype_{i}" for i in range(k)]
    return ImageData(to_uint8(protos[labels] + shifts), protos, labels, names, uniform_classes=True)


def _cached(enabled: bool, base: Path, key: str, files: list[Path], decode: Callable[[], ImageData]) -> ImageData:
    def fields() -> dict[str, Any]:
        data = decode()
        return {"images": data.images, "labels": data.labels, "classes": data.classes}

    return ImageData(**image_cache.cached(enabled, base, key, files, fields))


# ----------------------------------------------------------------- torchvision


def _missing_files_error(name: str, root: str, files: list[str], url: str, cause: BaseException) -> DatasetError:
    missing = [f for f in files if not os.path.isfile(os.path.join(root, f))]
    listed = ", ".join(missing) if missing else "none (but they failed torchvision's MD5 check)"
    return DatasetError(
        f"Dataset '{name}' could not be loaded from '{os.path.abspath(root)}': missing files: {listed}; "
        f"the automatic download failed ({type(cause).__name__}: {cause}). Download the archive from "
        f"{url} and extract it inside that folder, or point dataset.root (or the SNGAN_DATA_ROOT "
        f"environment variable) at the folder that already holds it."
    )


def _archive_files(cls: Any) -> list[str]:
    """The files of a torchvision dataset's extracted archive, relative to its root."""
    files = [os.path.join(cls.base_folder, f) for f, _ in cls.train_list + cls.test_list]
    if getattr(cls, "meta", None):
        files.append(os.path.join(cls.base_folder, cls.meta["filename"]))
    return files


def _load_cifar(name: str, root: str, split: str) -> ImageData:
    from torchvision import datasets

    cls = datasets.CIFAR10 if name == "cifar10" else datasets.CIFAR100
    try:
        ds = cls(root, train=(split == "train"), download=True)
    except Exception as exc:  # URLError, RuntimeError("Dataset not found or corrupted")
        raise _missing_files_error(name, root, _archive_files(cls), cls.url, exc) from exc
    images = torch.from_numpy(ds.data).permute(0, 3, 1, 2).contiguous()
    return ImageData(images, labels=torch.as_tensor(ds.targets, dtype=torch.int64), classes=list(ds.classes))


def _load_stl10(root: str, split: str, resolution: int) -> ImageData:
    from torchvision import datasets

    cls = datasets.STL10
    try:
        ds = cls(root, split=split, download=True)
    except Exception as exc:
        raise _missing_files_error("stl10", root, _archive_files(cls), cls.url, exc) from exc
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

        files = [base / f for f in _archive_files(datasets.CIFAR10 if name == "cifar10" else datasets.CIFAR100)]
        return _cached(cache, base, f"{name}-{split}", files, lambda: _load_cifar(name, root, split))
    if name == "stl10":
        from torchvision import datasets

        files = [base / f for f in _archive_files(datasets.STL10)]
        return _cached(
            cache, base, f"stl10-{split}-{resolution}px", files, lambda: _load_stl10(root, split, resolution)
        )
    if name == "folder":
        from sngan import folders  # it builds on this module

        paths = folders.folder_images(root)
        load = lambda: folders.load_folder(root, resolution, paths)  # noqa: E731
        return _cached(cache, base, f"folder-{resolution}px", paths, load)
    raise DatasetError(f"unknown dataset '{name}'; choose one of {', '.join(DATASETS)}")


# ----------------------------------------------------------------- sampling


class BatchSampler:
    """Draws batches without replacement, reshuffling each epoch, from a
    private ``torch.Generator``; ``state_dict`` captures all of it.

    Under torchrun every rank holds the same sampler state and draws the same global batch, then keeps
    its own slice (``rank`` of ``world``): the data order does not depend on the number of ranks."""

    def __init__(
        self,
        images: torch.Tensor,
        seed: int,
        hflip: bool = False,
        rank: int = 0,
        world: int = 1,
        labels: torch.Tensor | None = None,
    ) -> None:
        self.images, self.hflip, self.rank, self.world, self.labels = images, hflip, rank, world, labels
        self.gen = torch.Generator().manual_seed(seed)
        self.perm = torch.randperm(len(images), generator=self.gen)
        self.pos = 0

    def next_indices(self, batch: int) -> torch.Tensor:
        taken = []
        while batch > 0:
            if self.pos >= len(self.perm):
                self.perm, self.pos = torch.randperm(len(self.images), generator=self.gen), 0
            chunk = self.perm[self.pos : self.pos + batch]
            taken.append(chunk)
            self.pos += len(chunk)
            batch -= len(chunk)
        return torch.cat(taken)

    def place(self, device: torch.device) -> None:
        """Hold the uint8 images (and labels) on ``device``: batches are then gathered and converted there."""
        if device.type == "cpu":
            return
        self.images = self.images.to(device)
        self.labels = self.labels.to(device) if self.labels is not None else None

    def next(self, batch: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor | None]:
        """This rank's share of a global batch of ``batch`` images, as floats in [-1, 1] on ``device``,
        and their labels (None without labels). The draw (indices, flips) is made on the host from the
        sampler's generator, wherever the images are: the data order does not depend on placement."""
        index = self.next_indices(batch)
        flip = torch.rand(batch, generator=self.gen) < 0.5 if self.hflip else None
        lo, hi = shard(batch, self.rank, self.world)
        mine = index[lo:hi].to(self.images.device, non_blocking=True)
        x = to_float(self.images[mine].to(device, non_blocking=True))
        if flip is not None:
            x = torch.where(flip[lo:hi, None, None, None].to(device, non_blocking=True), x.flip(3), x)
        return x, None if self.labels is None else self.labels[mine].to(device, non_blocking=True)

    def state_dict(self) -> dict[str, Any]:
        return {"perm": self.perm.clone(), "pos": self.pos, "generator": self.gen.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if len(state["perm"]) != len(self.images):
            raise ValueError(
                f"the checkpoint's data order covers {len(state['perm'])} images but the dataset has "
                f"{len(self.images)}: resume with the dataset the run was started with"
            )
        self.perm, self.pos = state["perm"].clone(), int(state["pos"])
        self.gen.set_state(state["generator"])
