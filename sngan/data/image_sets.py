"""Images to be scored, not trained on: a folder of image files or a ``.npz`` of uint8 images (samples of
another trainer, say), decoded into one uint8 tensor and brought to the reals' resolution the way the reals
were: an integer multiple by averaging blocks (STL-10's 96 -> 48), any other size by PIL's bicubic fit
(centre crop to square, as image-folder datasets are read)."""

from __future__ import annotations

import os
import zipfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from sngan.data.dataset import DatasetError
from sngan.data.folders import IMAGE_EXTENSIONS, _image_files


@dataclass
class ImageSet:
    images: torch.Tensor  # uint8 [N, 3, R, R]
    sizes: dict[str, int]  # the sizes read ("32x32") -> how many images had it
    resized: str | None  # how they were brought to R x R, or None where none needed it


def load_image_set(path: str, resolution: int | None) -> ImageSet:
    """The images of a folder (every image file under it, sorted) or of a ``.npz``, at ``resolution``
    (None: as they are, which must then be one size). DatasetError says what is wrong and what to do."""
    where = Path(path)
    if where.is_file() and where.suffix.lower() == ".npz":
        raw = _npz_images(where)
    elif where.is_dir():
        raw = _folder_images(where)
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
        return ImageSet(torch.stack(raw), sizes, None)
    out, ways = [], set()
    for image in raw:
        fitted, way = _to_resolution(image, resolution)
        out.append(fitted)
        ways |= {way} if way else set()
    return ImageSet(torch.stack(out), sizes, "; ".join(sorted(ways)) or None)


def _to_resolution(image: torch.Tensor, r: int) -> tuple[torch.Tensor, str | None]:
    h, w = image.shape[-2:]
    if (h, w) == (r, r):
        return image, None
    if h == w and h % r == 0:
        f = h // r
        pooled = F.avg_pool2d(image[None].float(), f)[0].round().to(torch.uint8)
        return pooled, f"{w}x{h} -> {r}x{r} by averaging {f}x{f} blocks"
    from PIL import Image, ImageOps

    pil = Image.fromarray(image.permute(1, 2, 0).numpy())
    fitted = ImageOps.fit(pil, (r, r), Image.Resampling.BICUBIC)
    return torch.from_numpy(np.asarray(fitted).copy()).permute(2, 0, 1), f"{w}x{h} -> {r}x{r} by bicubic fit"


def _folder_images(base: Path) -> list[torch.Tensor]:
    from PIL import Image

    from sngan.data.images import to_rgb

    paths = sorted(_image_files(base))
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
        return list(pool.map(decode, paths))


def _npz_images(path: Path) -> list[torch.Tensor]:
    try:
        with np.load(path, allow_pickle=False) as f:
            keys = list(f.files)
            key = next(
                (k for k in ("images", "arr_0", "samples", "x") if k in keys), keys[0] if len(keys) == 1 else None
            )
            if key is None:
                raise DatasetError(
                    f"images='{path}' holds arrays {keys}; which are the images? Save them alone, or under the "
                    f"name 'images' or 'arr_0' (numpy.savez's default)."
                )
            array = f[key]
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise DatasetError(f"Cannot read images='{path}': {exc}. Pass a .npz written by numpy.savez.") from exc
    if array.dtype != np.uint8 or array.ndim != 4 or 3 not in (array.shape[1], array.shape[3]):
        raise DatasetError(
            f"images='{path}' holds {array.dtype} array '{key}' of shape {list(array.shape)}; it must hold uint8 "
            f"images (0-255) of shape [N, H, W, 3] or [N, 3, H, W]. Convert with (x * 127.5 + 127.5).round()"
            f".clip(0, 255).astype('uint8') for images in [-1, 1]."
        )
    tensor = torch.from_numpy(array)
    tensor = tensor if array.shape[1] == 3 and array.shape[3] != 3 else tensor.permute(0, 3, 1, 2)
    if len(tensor) == 0:
        raise DatasetError(f"images='{path}' holds no images (array '{key}' has length 0).")
    return list(tensor.contiguous())
