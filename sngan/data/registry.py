"""The dataset registry: each source module registers its datasets by the name a config gives
(``dataset=<name>``, sngan/configs/dataset/<name>.yaml), with what the rest of the trainer needs to know of
them. Nothing outside a source's module switches on a dataset's name.

To add a dataset: a module that registers a ``Source`` (its ``load`` decodes a split into ``ImageData``),
imported by ``sngan/data/__init__.py`` (or named in ``imports=`` on the command line), and a YAML file in
sngan/configs/dataset/ (or a folder given by ``hydra.searchpath``); docs/design.md walks through it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sngan.config import DatasetConfig
from sngan.data.dataset import ImageData
from sngan.registry import Registry


def every_split(split: str) -> bool:
    return True


@dataclass(frozen=True)
class Source:
    """A dataset as the trainer sees it."""

    load: Callable[[DatasetConfig, str], ImageData]  # (settings, split) -> the split's images, decoded
    resolution: int | None = None  # its native resolution; None: its images are brought to the model's
    test_split: bool = False  # it has a "test" split (metric rules with real_split=test)
    labelled: Callable[[str], bool] = every_split  # whether a split holds class labels
    labels_hint: str = "use a dataset with labels"  # how to get labels, for a conditional run ({root}: dataset.root)
    tag: Callable[[DatasetConfig], str] | None = None  # names its cached reference statistics (None: its name)
    spread: bool = False  # n reference images spread over its file order (else the first n: no class order)
    resize: str = "blocks"  # how images= of another size are brought to its reals': blocks | area | fit
    more_images: str = ""  # how to have more images than a batch asks for, where the settings can give them
    title: str = ""  # its name in messages (default: the registered name)


DATASETS: Registry[Source] = Registry("dataset")


def load_split(dataset: DatasetConfig, split: str | None = None) -> ImageData:
    """The images of ``dataset`` (its own split unless ``split`` names another), as its source decodes them."""
    return DATASETS.get(dataset.name).load(dataset, split or dataset.split)


def native_resolution(name: str) -> int | None:
    return DATASETS.get(name).resolution if name in DATASETS else None
