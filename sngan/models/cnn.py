"""The paper's standard CNN (Table 3): a DCGAN-style generator and a
discriminator of seven convolutions with LeakyReLU(0.1) and a dense output.
``bottom`` is M_g (4 for 32x32 images, 6 for 48x48)."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from . import MODELS, Architecture
from .layers import normal_, scaled


class CNNGenerator(nn.Module):
    def __init__(self, z_dim: int, bottom: int, width: float = 1.0) -> None:
        super().__init__()
        c = [scaled(n, width) for n in (512, 256, 128, 64)]
        self.z_dim, self.bottom, self.c0, self.num_classes = z_dim, bottom, c[0], 0  # unconditional only
        self.dense = normal_(nn.Linear(z_dim, bottom * bottom * c[0]))
        self.bn0 = nn.BatchNorm1d(bottom * bottom * c[0])
        layers: list[nn.Module] = []
        for cin, cout in zip(c[:-1], c[1:]):
            layers += [normal_(nn.ConvTranspose2d(cin, cout, 4, 2, 1)), nn.BatchNorm2d(cout), nn.ReLU()]
        layers += [normal_(nn.Conv2d(c[-1], 3, 3, 1, 1)), nn.Tanh()]
        self.body = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.bn0(self.dense(z)))
        return self.body(h.view(-1, self.c0, self.bottom, self.bottom))


class CNNDiscriminator(nn.Module):
    """``norm``: a gain-free normalization after convolutions 2-7 (constraint=bn|ln), not after the first
    (it reads the image) nor the dense layer, as in chainer-gan-lib's DCGAN discriminator with BN."""

    def __init__(self, resolution: int, width: float = 1.0, norm: type[nn.Module] | None = None) -> None:
        super().__init__()
        c = [scaled(n, width) for n in (64, 128, 256, 512)]
        spec = [  # (in, out, kernel, stride) as in Table 3
            (3, c[0], 3, 1),
            (c[0], c[0], 4, 2),
            (c[0], c[1], 3, 1),
            (c[1], c[1], 4, 2),
            (c[1], c[2], 3, 1),
            (c[2], c[2], 4, 2),
            (c[2], c[3], 3, 1),
        ]
        layers: list[nn.Module] = []
        for i, (cin, cout, k, s) in enumerate(spec):
            normed = [norm(cout)] if norm is not None and i > 0 else []
            layers += [normal_(nn.Conv2d(cin, cout, k, s, 1)), *normed, nn.LeakyReLU(0.1)]
        self.body = nn.Sequential(*layers)
        bottom = resolution // 8
        self.dense = normal_(nn.Linear(bottom * bottom * c[3], 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dense(self.body(x).flatten(1)).squeeze(1)


def _cnn(resolution: int) -> Architecture:
    def build(z_dim: int, width: float, norm: type[nn.Module] | None = None) -> tuple[nn.Module, nn.Module]:
        return CNNGenerator(z_dim, resolution // 8, width), CNNDiscriminator(resolution, width, norm)

    return Architecture(resolution, build, lipschitz_chain=True, min_batch=2)  # bn0 is a BatchNorm1d


MODELS.register("cnn32")(_cnn(32))
MODELS.register("cnn48")(_cnn(48))
