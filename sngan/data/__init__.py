"""Training images: every source (torchvision sets, image folders, the synthetic set) decoded into one
uint8 tensor ``ImageData``, cached on disk, and drawn in batches by ``BatchSampler``.

    dataset.py           ImageData, DatasetError, to_float / to_uint8
    sources.py           load_images(name, ...): which source, through the cache
    torchvision_sets.py  CIFAR-10/100, STL-10
    folders.py           image folders (labelled by subfolder)
    synthetic.py         the built-in synthetic set
    cache.py             decoded datasets kept on disk
    sampler.py           BatchSampler: the data order, saved in checkpoints
    images.py            PNG files and grids
"""

from sngan.data.dataset import DatasetError, ImageData, check_root, to_float, to_uint8
from sngan.data.sampler import BatchSampler
from sngan.data.sources import DATASETS, load_images
from sngan.data.synthetic import make_prototypes, make_synthetic
from sngan.data.torchvision_sets import NATIVE_RESOLUTION, WITH_TEST_SPLIT

__all__ = [
    "WITH_TEST_SPLIT",
    "DATASETS", "NATIVE_RESOLUTION", "BatchSampler", "DatasetError", "ImageData", "check_root",
    "load_images", "make_prototypes", "make_synthetic", "to_float", "to_uint8",
]  # fmt: skip
