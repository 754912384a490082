"""Training images: every source (torchvision sets, image folders, the synthetic set) registered by name
(``DATASETS``), decoded into one uint8 tensor ``ImageData``, cached on disk, and drawn in batches by
``BatchSampler``.

    registry.py          DATASETS: name -> Source (how to load it, its resolution, splits, labels)
    dataset.py           ImageData, DatasetError, to_float / to_uint8
    sources.py           load_images(name, ...): a split by name
    torchvision_sets.py  CIFAR-10/100, STL-10
    folders.py           image folders (labelled by subfolder)
    synthetic.py         the built-in synthetic set
    cache.py             decoded datasets kept on disk
    sampler.py           BatchSampler: the data order, saved in checkpoints
    images.py            PNG files and grids
    image_sets.py        images to score (evaluate images=)
"""

from sngan.data import folders, synthetic, torchvision_sets  # noqa: F401  (they register their datasets)
from sngan.data.dataset import DatasetError, ImageData, check_root, to_float, to_uint8
from sngan.data.registry import DATASETS, Source, load_split, native_resolution
from sngan.data.sampler import BatchSampler
from sngan.data.sources import load_images
from sngan.data.synthetic import make_prototypes, make_synthetic

__all__ = [
    "DATASETS", "BatchSampler", "DatasetError", "ImageData", "Source", "check_root", "load_images", "load_split",
    "make_prototypes", "make_synthetic", "native_resolution", "to_float", "to_uint8",
]  # fmt: skip
