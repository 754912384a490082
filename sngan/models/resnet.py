"""The paper's ResNets: Table 4 (32x32, CIFAR-10) and Table 5 (48x48, STL-10).

Generator: dense -> residual up-blocks -> BN, ReLU, conv3x3 -> tanh.
Discriminator: residual down-blocks -> ReLU -> global *sum* pooling -> a
bias-free dense layer, as in the official code.

Class-conditional versions (``num_classes`` > 0) follow the projection
discriminator paper (Miyato & Koyama, ICLR 2018) and its official code: the
generator's block BatchNorms become conditional (the last BatchNorm stays
plain), and D adds the projection <embed(y), phi(x)> of the pooled features on
a class embedding, which is spectrally normalized with the rest of D.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from . import MODELS, Architecture
from .layers import DBlock, DFirstBlock, GBlock, conv3, glorot_, scaled


class ResNetGenerator(nn.Module):
    def __init__(self, z_dim: int, bottom: int, channels: list[int], num_classes: int = 0) -> None:
        super().__init__()
        self.z_dim, self.bottom, self.c0, self.num_classes = z_dim, bottom, channels[0], num_classes
        self.dense = glorot_(nn.Linear(z_dim, bottom * bottom * channels[0]))
        self.blocks = nn.Sequential(*(GBlock(a, b, num_classes) for a, b in zip(channels[:-1], channels[1:])))
        self.bn = nn.BatchNorm2d(channels[-1])
        self.out = conv3(channels[-1], 3)

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        check_labels(self.num_classes, y)
        h = self.dense(z).view(-1, self.c0, self.bottom, self.bottom)
        for block in self.blocks:
            h = block(h, y)
        return torch.tanh(self.out(F.relu(self.bn(h))))


class ResNetDiscriminator(nn.Module):
    """``channels[0]`` is the first block's width; ``downsample[i]`` tells
    whether block i+1 halves the resolution; ``norm``: a gain-free normalization
    after each residual convolution but the first (constraint=bn|ln)."""

    def __init__(
        self, channels: list[int], downsample: list[bool], num_classes: int = 0, norm: type[nn.Module] | None = None
    ) -> None:
        super().__init__()
        self.num_classes = num_classes
        blocks: list[nn.Module] = [DFirstBlock(3, channels[0], norm)]
        for cin, cout, down in zip(channels[:-1], channels[1:], downsample):
            blocks.append(DBlock(cin, cout, down, norm))
        self.blocks = nn.Sequential(*blocks)
        self.dense = glorot_(nn.Linear(channels[-1], 1, bias=False))
        self.embed = glorot_(nn.Embedding(num_classes, channels[-1])) if num_classes else None

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        check_labels(self.num_classes, y)
        h = F.relu(self.blocks(x)).sum(dim=(2, 3))
        out = self.dense(h).squeeze(1)
        if self.embed is not None:
            out = out + (self.embed(y) * h).sum(dim=1)  # the projection term
        return out


def check_labels(num_classes: int, y: torch.Tensor | None) -> None:
    if (y is not None) != bool(num_classes):
        raise ValueError(
            f"this network is {'conditional' if num_classes else 'unconditional'}: "
            f"{'pass class labels y' if num_classes else 'it takes no class labels'}"
        )


def _build_resnet32(
    z_dim: int, width: float, num_classes: int = 0, norm: type[nn.Module] | None = None
) -> tuple[nn.Module, nn.Module]:
    g = ResNetGenerator(z_dim, 4, [scaled(256, width)] * 4, num_classes)
    d = ResNetDiscriminator([scaled(128, width)] * 4, [True, False, False], num_classes, norm)
    return g, d


def _build_resnet48(
    z_dim: int, width: float, num_classes: int = 0, norm: type[nn.Module] | None = None
) -> tuple[nn.Module, nn.Module]:
    g = ResNetGenerator(z_dim, 6, [scaled(n, width) for n in (512, 256, 128, 64)], num_classes)
    d = ResNetDiscriminator(
        [scaled(n, width) for n in (64, 128, 256, 512, 1024)], [True, True, True, False], num_classes, norm
    )
    return g, d


MODELS.register("resnet32")(Architecture(32, _build_resnet32, conditional=True))
MODELS.register("resnet48")(Architecture(48, _build_resnet48, conditional=True))
