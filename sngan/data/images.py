"""Image grids and PNG files from tensors in [0, 1], and image files read as 8-bit RGB.

The layout is torchvision's ``make_grid``/``save_image`` (images in rows of ``nrow``, 2 pixels of black
between and around them; a single image saved as it is), written here so that training, sampling and
their tracking do not import torchvision: its import pulls in torch's compiler stack and costs every
command seconds.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
from PIL import Image, ImageOps

from sngan.utils.outputs import write_atomic


def grid(images: torch.Tensor, nrow: int = 8, padding: int = 2) -> torch.Tensor:
    """(N, C, H, W) images tiled into one (C, H', W') image, ``nrow`` per row (fewer rows than ``nrow``
    columns when N < nrow), ``padding`` pixels of 0 between and around them; one image is returned as it is."""
    if images.dim() != 4:
        raise ValueError(f"grid takes a batch of images (N, C, H, W), not a tensor of shape {tuple(images.shape)}")
    n, c, h, w = images.shape
    if n == 1:
        return images[0]
    cols = max(1, min(nrow, n))
    rows = math.ceil(n / cols)
    out = images.new_zeros(c, rows * (h + padding) + padding, cols * (w + padding) + padding)
    for i, image in enumerate(images):
        top, left = padding + (i // cols) * (h + padding), padding + (i % cols) * (w + padding)
        out[:, top : top + h, left : left + w] = image
    return out


def to_pil(image: torch.Tensor) -> Image.Image:
    """One (C, H, W) image in [0, 1] as an 8-bit RGB (or greyscale) picture, rounded to nearest."""
    array = image.detach().float().cpu().mul(255).add(0.5).clamp(0, 255).to(torch.uint8)
    array = array.permute(1, 2, 0).numpy()
    return Image.fromarray(array[:, :, 0] if array.shape[2] == 1 else array)


def save_png(images: torch.Tensor, path: Path | str, nrow: int = 8) -> None:
    """A (C, H, W) image, or a grid of (N, C, H, W) images ``nrow`` per row, as a PNG file, written atomically
    (a stop or a full disk leaves the earlier file whole, never a truncated one; an error names ``path``)."""
    picture = to_pil(images if images.dim() == 3 else grid(images, nrow))
    write_atomic(path, lambda f: picture.save(f, format="PNG"))


def to_rgb(img: Image.Image) -> Image.Image:
    """An opened image file as 8-bit RGB, as it is meant to be seen: upright (its EXIF orientation applied:
    phone photos), 16-bit and 32-bit integer images scaled from 16 bits and float images from [0, 1]
    (Pillow's own conversion would clip them: white or black), and transparency composited onto white."""
    try:
        img = ImageOps.exif_transpose(img)
    except Exception:  # noqa: BLE001  damaged EXIF (Pillow raises several kinds): the image as stored
        pass
    if img.mode.startswith("I"):  # I;16, I;16B, I: 16-bit greyscale (PNG, TIFF)
        img = img.convert("I").point(lambda v: v * (1 / 257) + 0.5).convert("L")
    elif img.mode == "F":
        img = img.point(lambda v: v * 255 + 0.5).convert("L")
    if img.mode in ("RGBA", "LA", "PA") or "transparency" in img.info:  # alpha, or a transparent colour
        img = Image.alpha_composite(Image.new("RGBA", img.size, (255, 255, 255, 255)), img.convert("RGBA"))
    return img.convert("RGB")
