"""Spectral norms as the monitor reports them, against SVD and dense matrices; monitoring leaves
training bit-identical; the logged tags."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import TINY, run_training
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from sngan.models import build_models
from sngan.training.spectral import SpectralMonitor, conv_operator_norm, exact_sigma, sn_layers
from sngan.utils import checkpoint as ckpt


def dense_matrix_of_conv(conv: nn.Conv2d, in_shape: tuple[int, int, int]) -> np.ndarray:
    """The convolution (without bias) as a dense matrix, column by column from basis inputs."""
    n = int(np.prod(in_shape))
    basis = torch.eye(n, dtype=torch.float64).reshape(n, *in_shape)
    with torch.no_grad():
        out = nn.functional.conv2d(basis, conv.weight.double(), None, conv.stride, conv.padding)
    return out.reshape(n, -1).T.numpy()


def test_exact_sigma_equals_numpy_svd_and_the_estimate_converges_to_it():
    torch.manual_seed(0)
    layer = nn.Linear(7, 5)
    with torch.no_grad():
        u, _ = torch.linalg.qr(torch.randn(5, 5))
        v, _ = torch.linalg.qr(torch.randn(7, 5))  # orthonormal columns
        layer.weight.copy_(u @ torch.diag(torch.tensor([3.0, 2.0, 1.0, 0.5, 0.25])) @ v.T)
    expected = np.linalg.svd(layer.weight.detach().double().numpy(), compute_uv=False)[0]
    assert expected == pytest.approx(3.0, rel=1e-6)
    spectral_norm(layer)
    sn = layer.parametrizations.weight[0]
    with torch.no_grad():  # restart the power iteration from a poor u, v (registration ran 15 iterations)
        sn._u.copy_(nn.functional.normalize(torch.tensor([0.1, 1.0, 1.0, 1.0, 1.0]), dim=0))
        sn._v.copy_(nn.functional.normalize(layer.parametrizations.weight.original.T @ sn._u, dim=0))
    monitor = SpectralMonitor(nn.Sequential(layer), chain=True)
    first = monitor.measure()
    assert first["sigma/0/exact"] == pytest.approx(expected, rel=1e-9)
    x = torch.randn(4, 7)
    for _ in range(100):  # train-mode forwards: one power iteration each
        layer(x)
    later = monitor.measure()
    assert abs(later["sigma/0/gap"]) < 1e-5 < abs(first["sigma/0/gap"])
    assert later["sigma/0/estimate"] == pytest.approx(expected, rel=1e-5)
    assert later["sigma/0/normalized"] == pytest.approx(1.0, rel=1e-5)


@pytest.mark.parametrize(("kernel", "stride", "padding"), [(3, 1, 1), (4, 2, 1), (1, 1, 0)])
def test_conv_operator_norm_matches_the_dense_matrix(kernel, stride, padding):
    torch.manual_seed(kernel)
    conv = nn.Conv2d(2, 3, kernel, stride, padding, bias=False).double()
    in_shape = (2, 6, 6)
    dense = dense_matrix_of_conv(conv, in_shape)
    expected = np.linalg.norm(dense, 2)
    found, _ = conv_operator_norm(conv.weight.detach(), conv, in_shape, iterations=500)
    assert found == pytest.approx(expected, rel=1e-6)
    reshaped = exact_sigma(conv.weight.flatten(1))
    if kernel == 1:  # a 1x1 convolution is the matrix applied at every pixel: the same norm
        assert reshaped == pytest.approx(expected, rel=1e-6)
    else:  # otherwise the reshaped-kernel sigma is another number
        assert reshaped != pytest.approx(expected, rel=1e-2)


def test_monitor_reads_without_moving_u_and_labels_the_lipschitz_estimate():
    torch.manual_seed(0)
    _, d_cnn = build_models("cnn32", width=0.125)
    _, d_res = build_models("resnet32", width=0.125)
    for d, chain, key in ((d_cnn, True, "lipschitz/bound"), (d_res, False, "lipschitz/heuristic")):
        monitor = SpectralMonitor(d, chain)
        monitor.record_input_shapes(torch.zeros(2, 3, 32, 32))
        before = {k: v.clone() for k, v in d.state_dict().items()}
        scalars = monitor.measure()
        assert all(torch.equal(before[k], v) for k, v in d.state_dict().items())
        assert key in scalars and scalars[key] > 0
        for name, module in sn_layers(d):
            assert {f"sigma/{name}/{k}" for k in ("estimate", "exact", "gap", "normalized")} <= set(scalars)
            if isinstance(module, nn.Conv2d):
                assert f"sigma/{name}/operator" in scalars
    # Unnormalized D (the ablation): raw weights' norms, no estimate.
    _, plain = build_models("cnn32", width=0.125, spectral_norm=False)
    scalars = SpectralMonitor(plain, True).measure()
    assert "sigma/body.0/exact" in scalars and "sigma/body.0/estimate" not in scalars


def test_monitoring_every_step_leaves_training_bit_identical(tmp_path):
    base = TINY + ["train.steps=4", "train.n_dis=2"]
    run_training(tmp_path / "on", base + ["train.monitor_every=1"])
    run_training(tmp_path / "off", base + ["train.monitor_every=null"])
    a, b = ckpt.load(ckpt.find_latest(tmp_path / "on")), ckpt.load(ckpt.find_latest(tmp_path / "off"))
    for key in ("generator", "discriminator"):
        assert all(torch.equal(a[key][k], b[key][k]) for k in a[key]), key
    assert torch.equal(a["rng"]["torch"], b["rng"]["torch"])
    from test_train import scalar_steps

    assert scalar_steps(tmp_path / "on", "sigma/body.0/exact") == [1, 2, 3, 4]
    assert scalar_steps(tmp_path / "on", "grad_norm/d") == [1, 2, 3, 4]
    with pytest.raises(KeyError):
        scalar_steps(tmp_path / "off", "sigma/body.0/exact")


def test_gradient_norms_are_measured_before_the_next_update_can_reuse_their_memory(monkeypatch):
    """compile=max keeps gradients in CUDA-graph memory that the G update's graphs may reuse: D's norm is
    taken right after its last update, G's right after its own. Here the G update wipes D's gradients
    (as a replay may) and the norms logged stay those of the updates."""
    from helpers import compose_cfg, validated

    from sngan.cli.build import build_run, iteration_of
    from sngan.data import make_synthetic
    from sngan.training import iteration as loop

    cfg = validated(compose_cfg(TINY + ["train.n_dis=2"]))
    run = build_run(cfg, make_synthetic(50, 32), torch.device("cpu"))
    seen = {}
    plain_g_step = loop.g_step

    def g_step_that_reuses_d_memory(*args, **kwargs):
        seen["d"] = torch.cat([p.grad.flatten() for p in run.discriminator.parameters()]).norm()
        out = plain_g_step(*args, **kwargs)
        for p in run.discriminator.parameters():
            p.grad.fill_(7.0)
        return out

    monkeypatch.setattr(loop, "g_step", g_step_that_reuses_d_memory)
    stats, _, _ = loop.generator_iteration(run, iteration_of(cfg), grad_norms=True)
    g_norm = torch.cat([p.grad.flatten() for p in run.generator.parameters()]).norm()
    torch.testing.assert_close(stats["grad_norm/d"], seen["d"], rtol=1e-5, atol=0)
    torch.testing.assert_close(stats["grad_norm/g"], g_norm, rtol=1e-5, atol=0)
    assert "grad_norm/d" not in loop.generator_iteration(run, iteration_of(cfg))[0]  # measured only when asked


def test_monitor_operator_norm_of_the_normalized_conv_matches_the_dense_matrix():
    torch.manual_seed(3)
    conv = spectral_norm(nn.Conv2d(2, 3, 4, 2, 1))
    monitor = SpectralMonitor(nn.Sequential(conv), chain=True)
    monitor.record_input_shapes(torch.zeros(1, 2, 8, 8))
    assert monitor.input_shapes == {"0": (2, 8, 8)}
    first, second = monitor.measure(), monitor.measure()  # cold start, then warm-started
    plain = nn.Conv2d(2, 3, 4, 2, 1, bias=False).double()
    with torch.no_grad():
        plain.weight.copy_(conv.parametrizations.weight.original.double() / first["sigma/0/estimate"])
    expected = np.linalg.norm(dense_matrix_of_conv(plain, (2, 8, 8)), 2)
    assert first["sigma/0/operator"] == pytest.approx(expected, rel=1e-3)
    assert second["sigma/0/operator"] == pytest.approx(expected, rel=1e-4)
    assert second["lipschitz/bound"] == pytest.approx(second["sigma/0/operator"])


def test_a_learned_gain_is_part_of_the_norm_the_monitor_reports():
    """wgan_gp_sn's layers use gamma * W / sigma: the monitor reports the gain, and the normalized sigma, the
    operator norm and the Lipschitz product of the matrix the layer uses (they ignored the gain before)."""
    from sngan.models.layers import apply_spectral_norm

    def measured(gain: bool) -> dict[str, float]:
        torch.manual_seed(3)
        layers = [nn.Conv2d(2, 3, 4, 2, 1), nn.LeakyReLU(0.1), nn.Flatten(), nn.Linear(12, 1)]
        net = apply_spectral_norm(nn.Sequential(*layers), gain)
        if gain:
            with torch.no_grad():
                net[0].parametrizations.weight[0].gamma.fill_(2.5)
                net[3].parametrizations.weight[0].gamma.fill_(-0.5)
        monitor = SpectralMonitor(net, chain=True)
        monitor.record_input_shapes(torch.zeros(1, 2, 4, 4))
        return monitor.measure()

    plain, gained = measured(False), measured(True)
    assert (gained["sigma/0/gain"], gained["sigma/3/gain"]) == (2.5, -0.5) and "sigma/0/gain" not in plain
    assert gained["sigma/0/estimate"] == plain["sigma/0/estimate"]  # the power iteration's sigma is W's own
    assert gained["sigma/0/operator"] == pytest.approx(2.5 * plain["sigma/0/operator"], rel=1e-4)
    assert gained["sigma/3/normalized"] == pytest.approx(0.5 * plain["sigma/3/normalized"], rel=1e-6)
    assert gained["lipschitz/bound"] == pytest.approx(1.25 * plain["lipschitz/bound"], rel=1e-4)
