"""The paper's ResNets: Table 4 (32x32, CIFAR-10) and Table 5 (48x48, STL-10).

Generator: dense -> residual up-blocks -> BN, ReLU, conv3x3 -> tanh.
Discriminator: residual down-blocks -> ReLU -> global *sum* pooling -> a
bias-free dense layer, as in the official code.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from . import MODELS, Architecture
from .layers import DBlock, DFirstBlock, GBlock, conv3, glorot_, scaled


class ResNetGenerator(nn.Module):
    def __init__(self, z_dim: int, bottom: int, channels: list[int]) -> None:
        super().__init__()
        self.z_dim, self.bottom, self.c0 = z_dim, bottom, channels[0]
        self.dense = glorot_(nn.Linear(z_dim, bottom * bottom * channels[0]))
        self.blocks = nn.Sequential(*(GBlock(a, b) for a, b in zip(channels[:-1], channels[1:])))
        self.bn = nn.BatchNorm2d(channels[-1])
        self.out = conv3(channels[-1], 3)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.dense(z).view(-1, self.c0, self.bottom, self.bottom)
        return torch.tanh(self.out(F.relu(self.bn(self.blocks(h)))))


class ResNetDiscriminator(nn.Module):
    """``channels[0]`` is the first block's width; ``downsample[i]`` tells
    whether block i+1 halves the resolution."""

    def __init__(self, channels: list[int], downsample: list[bool]) -> None:
        super().__init__()
        blocks: list[nn.Module] = [DFirstBlock(3, channels[0])]
        for cin, cout, down in zip(channels[:-1], channels[1:], downsample):
            blocks.append(DBlock(cin, cout, down))
        self.blocks = nn.Sequential(*blocks)
        self.dense = glorot_(nn.Linear(channels[-1], 1, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.blocks(x)).sum(dim=(2, 3))
        return self.dense(h).squeeze(1)


def _build_resnet32(z_dim: int, width: float) -> tuple[nn.Module, nn.Module]:
    g = ResNetGenerator(z_dim, 4, [scaled(256, width)] * 4)
    d = ResNetDiscriminator([scaled(128, width)] * 4, [True, False, False])
    return g, d


def _build_resnet48(z_dim: int, width: float) -> tuple[nn.Module, nn.Module]:
    g = ResNetGenerator(z_dim, 6, [scaled(n, width) for n in (512, 256, 128, 64)])
    d = ResNetDiscriminator([scaled(n, width) for n in (64, 128, 256, 512, 1024)], [True, True, True, False])
    return g, d


MODELS.register("resnet32")(Architecture(32, _build_resnet32))
MODELS.register("resnet48")(Architecture(48, _build_resnet48))
