"""The paper's generator/discriminator pairs, registered by short name.

``build_models("resnet32", width=0.5)`` returns ``(generator, discriminator)``;
``MODELS.get(name).resolution`` tells the image size an architecture expects.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

from sngan.registry import Registry

from .layers import apply_spectral_norm, is_spectrally_normalized


@dataclass(frozen=True)
class Architecture:
    """A registered pair: image resolution and a builder of (G, D) without SN; ``conditional``
    builders also take a class count."""

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
    name: str, z_dim: int = 128, width: float = 1.0, spectral_norm: bool = True, num_classes: int = 0
) -> tuple[nn.Module, nn.Module]:
    """Build the registered pair ``name`` (class-conditional with ``num_classes`` > 0); the
    discriminator gets spectral normalization on every convolution, linear layer and class
    embedding unless disabled."""
    arch = MODELS.get(name)
    if num_classes and not arch.conditional:
        raise ValueError(f"model '{name}' has no class-conditional version")
    generator, discriminator = arch.build(z_dim, width, num_classes) if num_classes else arch.build(z_dim, width)
    if spectral_norm:
        apply_spectral_norm(discriminator)
    return generator, discriminator


# Importing the modules registers their architectures.
from . import cnn, resnet  # noqa: E402,F401

__all__ = ["MODELS", "Architecture", "build_models", "is_spectrally_normalized"]
