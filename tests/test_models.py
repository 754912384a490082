import math

import pytest
import torch
from torch import nn

from sngan.models import MODELS, build_models, is_spectrally_normalized
from sngan.registry import Registry, UnknownNameError
from sngan.training.losses import LOSSES
from sngan.training.step import Recipe, d_step, g_step

ARCHS = ["cnn32", "cnn48", "resnet32", "resnet48"]


def n_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_registry_lists_registered_names_on_unknown():
    with pytest.raises(UnknownNameError, match="cnn32, cnn48, resnet32, resnet48"):
        MODELS.get("resnt32")
    assert set(ARCHS) <= set(MODELS.names())


def test_registry_refuses_duplicates():
    reg: Registry[int] = Registry("thing")
    reg.register("a")(1)
    with pytest.raises(ValueError, match="registered twice"):
        reg.register("a")(2)


@pytest.mark.parametrize("name", ARCHS)
def test_shapes_and_spectral_norm_placement(name):
    g, d = build_models(name, width=0.125)
    res = MODELS.get(name).resolution
    x = g(torch.randn(3, 128))
    assert x.shape == (3, 3, res, res)
    assert x.abs().max() <= 1.0  # tanh output
    assert d(x).shape == (3,)
    d_layers = [m for m in d.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    g_layers = [m for m in g.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear))]
    assert d_layers and all(is_spectrally_normalized(m) for m in d_layers)
    assert g_layers and not any(is_spectrally_normalized(m) for m in g_layers)
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in d.modules())
    assert any(isinstance(m, nn.BatchNorm2d) for m in g.modules())


@pytest.mark.parametrize("name", ARCHS)
def test_spectral_norm_can_be_disabled(name):
    _, d = build_models(name, width=0.125, spectral_norm=False)
    assert not any(is_spectrally_normalized(m) for m in d.modules())


def test_width_multiplier_narrows_every_architecture():
    for name in ARCHS:
        g_full, d_full = build_models(name)
        g_half, d_half = build_models(name, width=0.5)
        # Convolutions dominate: halving the widths roughly quarters the count.
        assert 0.2 < n_params(g_half) / n_params(g_full) < 0.4  # the z-side dense layer does not narrow
        assert 0.15 < n_params(d_half) / n_params(d_full) < 0.35


def _conv(cin, cout, k):
    return cin * cout * k * k + cout


def test_parameter_counts_follow_the_papers_tables():
    # resnet32 (Table 4): the numbers the official code gives.
    g, d = build_models("resnet32")
    assert n_params(g) == 4_276_739
    assert n_params(d) == 1_053_824
    # cnn32 (Table 3): dense 128 -> 4*4*512 + BN, three 4x4 deconvs with BN, a 3x3 conv.
    g, d = build_models("cnn32")
    bn = lambda c: 2 * c  # noqa: E731
    g_expected = (
        (128 * 8192 + 8192)
        + bn(8192)
        + sum(_conv(a, b, 4) + bn(b) for a, b in [(512, 256), (256, 128), (128, 64)])
        + _conv(64, 3, 3)
    )
    assert n_params(g) == g_expected
    d_convs = [(3, 64, 3), (64, 64, 4), (64, 128, 3), (128, 128, 4), (128, 256, 3), (256, 256, 4), (256, 512, 3)]
    assert n_params(d) == sum(_conv(*c) for c in d_convs) + 4 * 4 * 512 + 1
    # cnn48: the same with M_g = 6 and a 6x6x512 dense input in D.
    g48, d48 = build_models("cnn48")
    assert n_params(g48) == g_expected + (128 + 1 + 2) * (36 - 16) * 512
    assert n_params(d48) == sum(_conv(*c) for c in d_convs) + 6 * 6 * 512 + 1
    # resnet48 (Table 5): G blocks 512->256->128->64, D blocks 64,128,256,512,1024.
    g, d = build_models("resnet48")

    def gblock(a, b):
        return bn(a) + _conv(a, b, 3) + bn(b) + _conv(b, b, 3) + _conv(a, b, 1)

    g_res = (128 * 36 * 512 + 36 * 512) + sum(gblock(a, b) for a, b in [(512, 256), (256, 128), (128, 64)])
    assert n_params(g) == g_res + bn(64) + _conv(64, 3, 3)
    first = _conv(3, 64, 3) + _conv(64, 64, 3) + _conv(3, 64, 1)
    pairs = [(64, 128), (128, 256), (256, 512), (512, 1024)]
    blocks = sum(_conv(a, b, 3) + _conv(b, b, 3) + _conv(a, b, 1) for a, b in pairs)
    assert n_params(d) == first + blocks + 1024  # final dense: no bias


def test_resnet_init_is_glorot_with_residual_gain():
    g, d = build_models("resnet32", spectral_norm=False)
    w = g.blocks[0].conv1.weight  # 3x3, 256 -> 256, gain sqrt(2)
    bound = math.sqrt(2) * math.sqrt(6 / (9 * 256 + 9 * 256))
    assert bound * 0.95 < w.abs().max() <= bound
    sc = g.blocks[0].shortcut.weight  # 1x1 shortcut, gain 1
    sc_bound = math.sqrt(6 / (256 + 256))
    assert sc_bound * 0.95 < sc.abs().max() <= sc_bound
    assert d.dense.bias is None
    assert torch.all(g.blocks[0].conv1.bias == 0)


def test_resnet_shortcuts_equal_the_official_order_of_resampling_and_1x1_convolution():
    """The blocks convolve the G shortcut before upsampling and pool the D shortcut before convolving (a
    quarter of the work); the official code does the reverse. The two orders are the same function."""
    from torch.nn import functional as F

    from sngan.models.layers import DBlock, GBlock

    torch.manual_seed(0)
    g_block, d_block = GBlock(8, 6).double().eval(), DBlock(6, 10, downsample=True).double()
    x = torch.randn(4, 8, 5, 5, dtype=torch.float64)
    h = g_block.conv2(F.relu(g_block.bn2(g_block.conv1(F.interpolate(F.relu(g_block.bn1(x)), scale_factor=2)))))
    official = h + g_block.shortcut(F.interpolate(x, scale_factor=2))
    torch.testing.assert_close(g_block(x), official, rtol=1e-12, atol=1e-12)
    x = torch.randn(4, 6, 8, 8, dtype=torch.float64)
    h = F.avg_pool2d(d_block.conv2(F.relu(d_block.conv1(F.relu(x)))), 2)
    official = h + F.avg_pool2d(d_block.shortcut(x), 2)
    torch.testing.assert_close(d_block(x), official, rtol=1e-12, atol=1e-12)
    widen = DBlock(6, 10, downsample=False).double()  # resnet48's last block: a shortcut, no pooling
    official = widen.conv2(F.relu(widen.conv1(F.relu(x)))) + widen.shortcut(x)
    torch.testing.assert_close(widen(x), official, rtol=1e-12, atol=1e-12)


def _u_vectors(d: nn.Module) -> list[torch.Tensor]:
    return [m.parametrizations.weight[0]._u.clone() for m in d.modules() if is_spectrally_normalized(m)]


def test_power_iteration_advances_once_per_d_update_and_not_in_g_update():
    torch.manual_seed(0)
    g, d = build_models("cnn32", width=0.125)
    loss = LOSSES.get("hinge")
    # lr = 0 keeps the weights fixed, so u's motion is the power iteration alone.
    opt_d = torch.optim.Adam(d.parameters(), lr=0.0)
    opt_g = torch.optim.Adam(g.parameters(), lr=1e-3)
    layers = [m for m in d.modules() if is_spectrally_normalized(m)]
    u0 = _u_vectors(d)
    expected = []
    for m, u in zip(layers, u0):
        w = m.parametrizations.weight.original.detach().flatten(1)
        v = nn.functional.normalize(w.t() @ u, dim=0, eps=1e-12)
        expected.append(nn.functional.normalize(w @ v, dim=0, eps=1e-12))
    d_step(g, d, opt_d, torch.randn(4, 3, 32, 32), None, Recipe(loss, 128))
    u1 = _u_vectors(d)
    for got, want, before in zip(u1, expected, u0):
        assert torch.allclose(got, want, atol=1e-6)
        assert len(got) == 1 or not torch.equal(got, before)
    g_step(g, d, opt_g, 4, torch.device("cpu"), Recipe(loss, 128))
    for got, want in zip(_u_vectors(d), u1):
        assert torch.equal(got, want)
    assert d.training and all(p.requires_grad for p in d.parameters())
