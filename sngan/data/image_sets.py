"""Images to be scored, not trained on: a folder of image files or a ``.npz`` of uint8 images (samples of
another trainer, say), decoded into one uint8 tensor and brought to the reals' resolution the way that
dataset's reals are. A square image whose side is an integer multiple k of the resolution is averaged over
k x k blocks (the mean rounded), as STL-10's reals are (96 -> 48), for every dataset but ``folder``, whose
reals are read by PIL's bicubic fit and so are these. Any other size gets that bicubic fit (centre crop to
square), except under STL-10, whose reals' area averaging it keeps. CIFAR's reals are never resized: a
multiple of 32 is averaged by blocks, which undoes the plain upscaling a sampler might have done."""

from __future__ import annotations

import contextlib
import os
import zipfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from sngan.data.dataset import DatasetError
from sngan.data.folders import IMAGE_EXTENSIONS, image_files
from sngan.data.registry import DATASETS


@dataclass
class ImageSet:
    images: torch.Tensor  # uint8 [N, 3, R, R]
    sizes: dict[str, int]  # the sizes read ("32x32") -> how many images had it
    resized: str | None  # how they were brought to R x R, or None where none needed it
    total: int  # images there are in all (``images`` holds the first ``limit`` of them)


def load_image_set(path: str, resolution: int | None, dataset: str | None = None, limit: int | None = None) -> ImageSet:
    """The first ``limit`` (None: all) images of a folder (every image file under it, sorted) or of a
    ``.npz``, at ``resolution`` as ``dataset``'s reals are resized (None: as they are, which must then be
    one size), and how many there are in all. DatasetError says what is wrong and what to do."""
    where = Path(path)
    if not where.exists():
        raise DatasetError(
            f"images='{path}' does not exist. Pass a folder of images ({', '.join(IMAGE_EXTENSIONS)}) or a .npz "
            f"holding uint8 images [N, H, W, 3] or [N, 3, H, W]."
        )
    if where.is_file() and where.suffix.lower() == ".npz":
        raw, total = _npz_images(where, limit)
    elif where.is_dir():
        raw, total = _folder_images(where, limit)
    else:
        raise DatasetError(
            f"images='{path}' is neither a folder nor a .npz file. Pass a folder of images "
            f"({', '.join(IMAGE_EXTENSIONS)}) or a .npz holding uint8 images [N, H, W, 3] or [N, 3, H, W]."
        )
    sizes: dict[str, int] = {}
    for image in raw:
        key = f"{image.shape[-1]}x{image.shape[-2]}"
        sizes[key] = sizes.get(key, 0) + 1
    if resolution is None:
        if len(sizes) > 1:
            raise DatasetError(
                f"images='{path}' holds images of several sizes ({', '.join(sizes)}) and nothing says which "
                f"size the reals have. Add dataset=... (its reals set the size) or make the images one size."
            )
        return ImageSet(torch.stack(raw).contiguous(), sizes, None, total)
    out, ways = [], set()
    for image in raw:
        fitted, way = _to_resolution(image, resolution, dataset)
        out.append(fitted)
        ways |= {way} if way else set()
    return ImageSet(torch.stack(out).contiguous(), sizes, "; ".join(sorted(ways)) or None, total)


def _to_resolution(image: torch.Tensor, r: int, dataset: str | None) -> tuple[torch.Tensor, str | None]:
    """``image`` brought to ``r`` x ``r`` as ``dataset``'s source brings its reals (its ``resize``)."""
    resize = DATASETS.get(dataset).resize if dataset in DATASETS else "blocks"
    h, w = image.shape[-2:]
    if (h, w) == (r, r):
        return image, None
    if h == w and h % r == 0 and resize != "fit":  # STL-10's reals' 2x2 blocks (96 -> 48), any k here
        k = h // r
        blocks = F.avg_pool2d(image[None].float(), k)[0]
        return blocks.round().clamp_(0, 255).to(torch.uint8), f"{w}x{h} -> {r}x{r} by averaging {k}x{k} blocks"
    if resize == "area":  # as sngan.data.torchvision_sets resizes STL-10's reals, any size to any
        area = F.interpolate(image[None].float(), size=(r, r), mode="area")[0]
        return area.round().clamp_(0, 255).to(torch.uint8), f"{w}x{h} -> {r}x{r} by area averaging"
    from PIL import Image, ImageOps

    pil = Image.fromarray(image.permute(1, 2, 0).numpy())
    fitted = ImageOps.fit(pil, (r, r), Image.Resampling.BICUBIC)
    return torch.from_numpy(np.asarray(fitted).copy()).permute(2, 0, 1), f"{w}x{h} -> {r}x{r} by bicubic fit"


def _folder_images(base: Path, limit: int | None) -> tuple[list[torch.Tensor], int]:
    from PIL import Image

    from sngan.data.images import to_rgb

    paths = sorted(image_files(base))
    if not paths:
        raise DatasetError(
            f"images='{base}' holds no images with extensions {', '.join(IMAGE_EXTENSIONS)}. Point images= at "
            f"the folder that holds them (subfolders are searched too)."
        )

    def decode(p: Path) -> torch.Tensor:
        try:
            with Image.open(p) as img:
                return torch.from_numpy(np.asarray(to_rgb(img)).copy()).permute(2, 0, 1)
        except OSError as exc:
            raise DatasetError(f"Cannot decode image '{p}': {exc}. Remove or replace that file.") from exc

    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        return list(pool.map(decode, paths[:limit])), len(paths)


def _npz_images(path: Path, limit: int | None) -> tuple[list[torch.Tensor], int]:
    try:
        loaded = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise DatasetError(
            f"Cannot read images='{path}': it is not a .npz written by numpy.savez ({str(exc).split('. ')[0]}). "
            f"Save the images with numpy.savez(path, images=uint8_array), or pass a folder of image files."
        ) from exc
    if not isinstance(loaded, np.lib.npyio.NpzFile):  # a .npy under another name: one bare array
        loaded = {"images": loaded}
    with contextlib.closing(loaded) if hasattr(loaded, "close") else contextlib.nullcontext():
        keys = list(loaded.keys())
        key = next((k for k in ("images", "arr_0", "samples", "x") if k in keys), keys[0] if len(keys) == 1 else None)
        if key is None:
            raise DatasetError(
                f"images='{path}' holds arrays {keys}; which are the images? Save them alone, or under the name "
                f"'images' or 'arr_0' (numpy.savez's default)."
            )
        try:
            array = loaded[key]
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
            raise DatasetError(f"Cannot read array '{key}' of images='{path}': {exc}.") from exc
    if array.dtype != np.uint8 or array.ndim != 4 or 3 not in (array.shape[1], array.shape[3]):
        raise DatasetError(
            f"images='{path}' holds {array.dtype} array '{key}' of shape {list(array.shape)}; it must hold uint8 "
            f"images (0-255) of shape [N, H, W, 3] or [N, 3, H, W].{_conversion_hint(array)}"
        )
    if len(array) == 0:
        raise DatasetError(f"images='{path}' holds no images (array '{key}' has length 0).")
    tensor = torch.from_numpy(array[:limit])
    tensor = tensor if array.shape[1] == 3 and array.shape[3] != 3 else tensor.permute(0, 3, 1, 2)
    return list(tensor.contiguous()), len(array)


def _conversion_hint(array: np.ndarray) -> str:
    """How to turn floating-point images into uint8, by the range they span."""
    if not np.issubdtype(array.dtype, np.floating) or array.size == 0:
        return ""
    low, high = float(array.min()), float(array.max())
    scale = "(x + 1) * 127.5" if low < 0 else "x * 255" if high <= 1 else "x"
    return f" Its values span [{low:.3g}, {high:.3g}]: save ({scale}).round().clip(0, 255).astype('uint8')."
