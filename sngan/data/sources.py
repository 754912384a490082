"""``load_images``: a dataset's split decoded into memory by name, as the registered source reads it
(sngan/data/registry.py).

Every dataset is decoded once into memory (CIFAR-10/100 hold 150 MB, STL-10's
unlabeled split at 48x48 690 MB) and, unless dataset.cache=false, kept on disk
beside the data in ``<root>/.sngan_cache/`` as that tensor: later runs load it
instead of decoding again (an image folder is decoded again when any file in it
changes).
"""

from __future__ import annotations

from sngan.config import DatasetConfig
from sngan.data.dataset import ImageData
from sngan.data.registry import load_split


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
    settings = DatasetConfig(
        name, root, split, resolution, hflip=False, size=synthetic_size, modes=synthetic_modes, seed=synthetic_seed,
        cache=cache, limit=None,
    )  # fmt: skip
    return load_split(settings)
