"""How images reach a feature network's input size, named in the metric rule (``metrics.resize``).

- ``legacy``: the network's usual resize, done inside it on float values in [0, 1]. Inception: pytorch-fid's
  ``F.interpolate(bilinear, align_corners=False)`` to 299x299, as every pytorch-fid number. DINOv2: EDM2's
  detector's ``F.interpolate(bicubic, antialias=True)`` to 224x224 (NVlabs/edm2, calculate_metrics.py).
- ``clean``: clean-fid's "clean" resize (Parmar et al., CVPR 2022; GaParmar/clean-fid, cleanfid/resize.py):
  PIL's bicubic filter on float values (mode "F"), each channel by itself, clipped to [0, 255] and not rounded.
  clean-fid showed that the legacy resizes alias and move FID by points; this one is what its "clean" numbers use.
  ``tests/test_resize.py`` checks it equals clean-fid's own resizer on the same images.

Images already at the input size are passed as they are by either (PIL's resize to the same size is a copy).
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

RESIZES = ("legacy", "clean")


def clean_resize(images: torch.Tensor, size: int) -> torch.Tensor:
    """uint8 images [N, 3, H, W] -> float32 [N, 3, size, size] in [0, 255], clean-fid's "clean" resize."""
    if images.shape[-2:] == (size, size):
        return images.float()
    pixels = images.cpu().numpy().astype(np.float32)
    out = np.empty((len(pixels), pixels.shape[1], size, size), np.float32)
    for i, image in enumerate(pixels):
        for c, channel in enumerate(image):
            resized = Image.fromarray(channel).resize((size, size), resample=Image.Resampling.BICUBIC)
            out[i, c] = np.asarray(resized).clip(0, 255)
    return torch.from_numpy(out)


def to_input(images: torch.Tensor, size: int, resize: str) -> torch.Tensor:
    """uint8 images -> float values in [0, 1] for a network of input size ``size``: as they are under ``legacy``
    (the network resizes them), at ``size`` under ``clean``."""
    if resize == "clean":
        return clean_resize(images, size) / 255.0
    return images.float() / 255.0
