"""Building blocks shared by the paper's networks.

Initialisation follows the official Chainer code (pfnet-research/sngan_projection
and chainer-gan-lib): Glorot-uniform with gain sqrt(2) on the residual
convolutions of the ResNets and gain 1 on shortcuts and dense layers; N(0, 0.02)
for the standard CNN. Biases start at zero. Weights are initialised *before*
spectral normalization is attached, so the parametrization starts from them.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.utils import parametrize
from torch.nn.utils.parametrizations import _SpectralNorm

RESIDUAL_GAIN = math.sqrt(2.0)


def scaled(channels: int, width: float) -> int:
    """Channel count under a width multiplier; never below one channel."""
    return max(1, int(round(channels * width)))


def glorot_(module: nn.Module, gain: float = 1.0) -> nn.Module:
    nn.init.xavier_uniform_(module.weight, gain=gain)
    if getattr(module, "bias", None) is not None:
        nn.init.zeros_(module.bias)
    return module


def normal_(module: nn.Module, std: float = 0.02) -> nn.Module:
    nn.init.normal_(module.weight, 0.0, std)
    if getattr(module, "bias", None) is not None:
        nn.init.zeros_(module.bias)
    return module


class FP32SpectralNorm(_SpectralNorm):
    """torch's spectral-norm parametrization (same u/v buffers, initialisation and state-dict keys) with
    the power iteration and sigma always in fp32: under CUDA autocast the stock one runs its matrix-vector
    products in bf16, which blurs sigma by about 1% per layer. The layer's own convolution still runs in
    the autocast precision, on the fp32-normalized weight."""

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        with torch.autocast(weight.device.type, enabled=False):
            return super().forward(weight.float()).to(weight.dtype)


class GainedSpectralNorm(FP32SpectralNorm):
    """W~ = gamma * W_SN with one learned scalar gamma per layer, starting at 1: the paper's WGAN-GP with
    spectral normalization (Appendix E.1, Eq. 32), which leaves the Lipschitz constant to the gradient
    penalty. The same u/v buffers and power iteration as ``FP32SpectralNorm``; gamma is its parameter."""

    def __init__(self, weight: torch.Tensor, n_power_iterations: int = 1, dim: int = 0) -> None:
        super().__init__(weight, n_power_iterations, dim)
        self.gamma = nn.Parameter(torch.ones((), dtype=weight.dtype, device=weight.device))

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        return self.gamma.to(weight.dtype) * super().forward(weight)


def apply_spectral_norm(net: nn.Module, gain: bool = False) -> nn.Module:
    """Attach spectral normalization (one power iteration per forward in train
    mode, u and v kept as buffers between calls) to every Conv2d and Linear, and
    to the projection discriminator's class embedding (its [K, C] matrix); with
    ``gain``, each with a learned scalar gain (``GainedSpectralNorm``)."""
    kind = GainedSpectralNorm if gain else FP32SpectralNorm
    for module in list(net.modules()):
        if isinstance(module, (nn.Conv2d, nn.Linear, nn.Embedding)):
            parametrize.register_parametrization(module, "weight", kind(module.weight, 1, dim=0))
    return net


def is_spectrally_normalized(module: nn.Module) -> bool:
    parametrizations = getattr(module, "parametrizations", None)
    # weight normalization is a parametrization too: spectral norm is the one with u and v
    return parametrizations is not None and "weight" in parametrizations and hasattr(parametrizations.weight[0], "_u")


class UnitRows(nn.Module):
    """Weight normalization with the gain fixed at 1 (the paper's footnote 8: gamma_i = 1): each output
    row of the weight, taken as a (d_out, d_in*h*w) matrix, divided by its norm, so the layer has no
    learnable gain at all (torch's ``weight_norm`` would learn one, its ``original0``)."""

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        norms = weight.flatten(1).norm(dim=1).clamp_min(1e-12)
        return weight / norms.view(-1, *([1] * (weight.dim() - 1)))


def apply_weight_norm(net: nn.Module) -> nn.Module:
    """Gain-free weight normalization (``UnitRows``) on every Conv2d and Linear of ``net``."""
    for module in list(net.modules()):
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            parametrize.register_parametrization(module, "weight", UnitRows())
    return net


def orthogonal_init_(net: nn.Module) -> nn.Module:
    """Every Conv2d and Linear weight a random orthonormal operator (rows or columns orthonormal, as the
    (d_out, d_in*h*w) matrix allows), as orthonormal regularization starts (Brock et al., 2016)."""
    for module in net.modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            nn.init.orthogonal_(module.weight)
    return net


class GainFreeBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm with a learned bias (beta) and no gain: the paper's BN baseline "excluded the multiplier
    parameter gamma" (section 4.1), as chainer-gan-lib's ``BatchNormalization(use_gamma=False)``. torch's
    layer is built affine and its gain then removed, so ``F.batch_norm`` gets ``weight=None``."""

    def __init__(self, num_features: int) -> None:
        super().__init__(num_features)
        self.register_parameter("weight", None)


class GainFreeLayerNorm2d(nn.Module):
    """Layer normalization of each image over all its features (C, H, W), then a learned bias per channel,
    no gain (section 4.1). One bias per channel, as the BatchNorm baseline's, is our choice: the paper does
    not say, and a bias per (C, H, W) element would tie the layer to one resolution."""

    def __init__(self, num_features: int) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(num_features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(x, x.shape[1:]) + self.bias.view(1, -1, 1, 1).to(x.dtype)


# Gain-free normalization layers after D's hidden convolutions, by the constraint's ``norm``.
NORMS: dict[str, type[nn.Module]] = {"batch": GainFreeBatchNorm2d, "layer": GainFreeLayerNorm2d}


def conv3(cin: int, cout: int, gain: float = 1.0) -> nn.Conv2d:
    return glorot_(nn.Conv2d(cin, cout, 3, 1, 1), gain)


def conv1(cin: int, cout: int) -> nn.Conv2d:
    return glorot_(nn.Conv2d(cin, cout, 1, 1, 0))


class ConditionalBatchNorm2d(nn.Module):
    """BatchNorm whose gain and bias are looked up per class (Miyato & Koyama, 2018): statistics over
    the whole batch, then ``gain[y] * x_hat + bias[y]``; gains start at 1 and biases at 0, so a new
    conditional generator starts as the unconditional one."""

    def __init__(self, num_features: int, num_classes: int) -> None:
        super().__init__()
        self.bn = nn.BatchNorm2d(num_features, affine=False)
        self.gain = nn.Embedding(num_classes, num_features)
        self.bias = nn.Embedding(num_classes, num_features)
        nn.init.ones_(self.gain.weight)
        nn.init.zeros_(self.bias.weight)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.bn(x) * self.gain(y)[:, :, None, None] + self.bias(y)[:, :, None, None]


def batch_norm(num_features: int, num_classes: int = 0) -> nn.Module:
    return ConditionalBatchNorm2d(num_features, num_classes) if num_classes else nn.BatchNorm2d(num_features)


def normalize(bn: nn.Module, x: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
    return bn(x, y) if isinstance(bn, ConditionalBatchNorm2d) else bn(x)


class GBlock(nn.Module):
    """Generator residual block: BN-ReLU-up-conv3-BN-ReLU-conv3, with a nearest
    upsampling 1x1-conv shortcut (learnable, as in the official code). With
    ``num_classes``, both BatchNorms are class-conditional. The shortcut convolves
    before it upsamples: a 1x1 convolution commutes with nearest upsampling, and
    this order does a quarter of the official order's work."""

    def __init__(self, cin: int, cout: int, num_classes: int = 0) -> None:
        super().__init__()
        self.bn1 = batch_norm(cin, num_classes)
        self.conv1 = conv3(cin, cout, RESIDUAL_GAIN)
        self.bn2 = batch_norm(cout, num_classes)
        self.conv2 = conv3(cout, cout, RESIDUAL_GAIN)
        self.shortcut = conv1(cin, cout)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        h = F.interpolate(F.relu(normalize(self.bn1, x, y)), scale_factor=2, mode="nearest")
        h = self.conv2(F.relu(normalize(self.bn2, self.conv1(h), y)))
        return h + F.interpolate(self.shortcut(x), scale_factor=2, mode="nearest")


class DBlock(nn.Module):
    """Discriminator residual block: ReLU-conv3-ReLU-conv3 (then 2x2 average
    pooling when downsampling). The 1x1 shortcut exists when the channel count
    changes or the block downsamples. The official code convolves, then pools;
    the two commute (both linear, the bias survives averaging), so this block pools
    first and its shortcut does a quarter of the work. ``norm`` (a gain-free
    normalization, constraint=bn|ln) follows each residual convolution."""

    def __init__(self, cin: int, cout: int, downsample: bool, norm: type[nn.Module] | None = None) -> None:
        super().__init__()
        self.downsample = downsample
        self.conv1 = conv3(cin, cout, RESIDUAL_GAIN)
        self.conv2 = conv3(cout, cout, RESIDUAL_GAIN)
        self.shortcut = conv1(cin, cout) if (downsample or cin != cout) else None
        # nn.Identity has no parameters or buffers: without a norm the state-dict keys stay as they were
        self.norm1, self.norm2 = (norm(cout), norm(cout)) if norm is not None else (nn.Identity(), nn.Identity())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.norm2(self.conv2(F.relu(self.norm1(self.conv1(F.relu(x))))))
        s = x
        if self.downsample:
            h, s = F.avg_pool2d(h, 2), F.avg_pool2d(s, 2)
        return h + (s if self.shortcut is None else self.shortcut(s))


class DFirstBlock(nn.Module):
    """The discriminator's first ("optimized") block: no ReLU before the first
    convolution, and the shortcut pools before its 1x1 convolution. ``norm``
    follows the second convolution only: the convolutions that read the image
    stay plain, as the CNN's first one (chainer-gan-lib's BN discriminator)."""

    def __init__(self, cin: int, cout: int, norm: type[nn.Module] | None = None) -> None:
        super().__init__()
        self.conv1 = conv3(cin, cout, RESIDUAL_GAIN)
        self.conv2 = conv3(cout, cout, RESIDUAL_GAIN)
        self.shortcut = conv1(cin, cout)
        self.norm2 = norm(cout) if norm is not None else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.avg_pool2d(self.norm2(self.conv2(F.relu(self.conv1(x)))), 2)
        return h + self.shortcut(F.avg_pool2d(x, 2))
