"""The paper's generator/discriminator pairs, registered by short name.

``build_models("resnet32", width=0.5)`` returns ``(generator, discriminator)``;
``MODELS.get(name).resolution`` tells the image size an architecture expects;
``build_models(..., constraint="wn")`` builds D as one of the paper's baselines
(sngan/models/constraints.py).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

from sngan.registry import Registry

from .constraints import CONSTRAINTS, constrain_, norm_layer, spectral_norm_of
from .layers import is_spectrally_normalized


@dataclass(frozen=True)
class Architecture:
    """A registered pair: image resolution and a builder of (G, D) without SN; ``conditional``
    builders also take a class count; every builder takes ``norm``, D's gain-free normalization layer."""

    resolution: int
    build: Callable[..., tuple[nn.Module, nn.Module]]
    # D is a plain chain of layers and 1-Lipschitz activations, so the product of the layers'
    # operator norms bounds its Lipschitz constant (not so with residual sums and sum pooling)
    lipschitz_chain: bool = False
    conditional: bool = False  # has a class-conditional version (conditional BN G, projection D)
    # The smallest batch per process G trains on: a BatchNorm in train mode needs two values per channel
    # (a BatchNorm2d also counts positions, so one image is enough; a BatchNorm1d needs two images)
    min_batch: int = 1


MODELS: Registry[Architecture] = Registry("model")


def build_models(
    name: str,
    z_dim: int = 128,
    width: float = 1.0,
    spectral_norm: bool | None = None,
    num_classes: int = 0,
    constraint: str | None = None,
) -> tuple[nn.Module, nn.Module]:
    """Build the registered pair ``name`` (class-conditional with ``num_classes`` > 0), its discriminator
    as ``constraint`` (a CONSTRAINTS name) makes it; without one, ``spectral_norm`` picks "sn" (spectral
    normalization on every convolution, linear layer and class embedding: the default) or "none"."""
    if constraint is None:
        constraint = "none" if spectral_norm is False else "sn"
    elif spectral_norm is not None and spectral_norm != spectral_norm_of(constraint):
        raise ValueError(f"spectral_norm={spectral_norm} contradicts constraint '{constraint}'")
    arch = MODELS.get(name)
    if num_classes and not arch.conditional:
        raise ValueError(f"model '{name}' has no class-conditional version")
    norm = norm_layer(constraint)
    generator, discriminator = (
        arch.build(z_dim, width, num_classes, norm=norm) if num_classes else arch.build(z_dim, width, norm=norm)
    )
    return generator, constrain_(discriminator, constraint)


# Importing the modules registers their architectures.
from . import cnn, resnet  # noqa: E402,F401

__all__ = ["CONSTRAINTS", "MODELS", "Architecture", "build_models", "is_spectrally_normalized"]
