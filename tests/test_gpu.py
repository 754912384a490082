"""What only a CUDA GPU can show (skipped elsewhere; run them on one with `pytest tests/test_gpu.py`):
spectral norm in fp32 under CUDA autocast, the learning rate seen by captured (compile=max) updates,
device-resident batches equal to host ones, gradient norms under CUDA graphs equal to eager ones, and
bf16/compiled training staying close to fp32 eager."""

from __future__ import annotations

import pytest
import torch
from helpers import TINY, compose_cfg, run_training, validated
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from sngan.data import BatchSampler, make_synthetic
from sngan.models.layers import apply_spectral_norm
from sngan.utils import checkpoint as ckpt

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
CUDA = torch.device("cuda")


def sigma(layer: nn.Module, autocast: bool) -> float:
    """The sigma a layer divides by, from its stored u and v (eval mode: no power iteration)."""
    layer.eval()
    with torch.autocast("cuda", dtype=torch.bfloat16, enabled=autocast):
        weight = layer.weight
    return float(layer.parametrizations.weight.original.norm() / weight.float().norm())


def test_cuda_autocast_lowers_the_stock_sigma_to_bf16_but_not_ours():
    torch.manual_seed(0)
    ours = apply_spectral_norm(nn.Sequential(nn.Linear(512, 512)))[0].to(CUDA)
    torch.manual_seed(0)
    stock = spectral_norm(nn.Linear(512, 512)).to(CUDA)
    assert sigma(ours, autocast=True) == pytest.approx(sigma(ours, autocast=False), rel=1e-6)
    assert sigma(stock, autocast=True) != pytest.approx(sigma(stock, autocast=False), rel=1e-5)  # the hazard


def test_device_resident_batches_equal_host_batches():
    data = make_synthetic(100, 32)
    host = BatchSampler(data.images, seed=3, hflip=True, labels=data.labels)
    device = BatchSampler(data.images, seed=3, hflip=True, labels=data.labels)
    cpu = BatchSampler(data.images, seed=3, hflip=True, labels=data.labels)
    device.place(CUDA)
    assert device.images.device.type == "cuda"
    for _ in range(20):  # more than PinnedUploads.SLOTS: every pinned buffer refilled
        (xh, yh), (xd, yd), (xc, yc) = host.next(32, CUDA), device.next(32, CUDA), cpu.next(32, torch.device("cpu"))
        assert torch.equal(xh, xd) and torch.equal(yh, yd)
        assert torch.equal(xh.cpu(), xc) and torch.equal(yh.cpu(), yc)


def test_captured_updates_read_the_scheduled_learning_rate(tmp_path):
    """compile=max: after k steps of a linear decay, Adam's rate tensor holds lr * (1 - k / steps), and a
    run resumed there continues with it."""
    settings = TINY + ["device=cuda", "train.compile=max", "train.steps=6", "train.checkpoint_every=3",
                       "train.monitor_every=null", "optim.lr_d=1e-3", "optim.lr_g=1e-3"]  # fmt: skip
    run_training(tmp_path, settings)
    state = ckpt.load(tmp_path / "checkpoints" / "ckpt_00000003.pt")
    lr = state["opt_d"]["param_groups"][0]["lr"]
    assert float(lr) == pytest.approx(1e-3 * (1 - 2 / 6), rel=1e-6)  # the rate of step 3's updates
    from sngan.cli.build import build_run

    cfg = validated(compose_cfg(settings))
    assert build_run(cfg, make_synthetic(50, 32), CUDA).opt_d.defaults["fused"]


def test_cuda_graph_training_follows_eager_training_through_the_decay(tmp_path):
    """compile=max against eager, fp32 without TF32, 10 steps of a linear decay to 0: a rate frozen into
    the graphs would leave the weights far apart; a followed schedule keeps them within rounding."""
    settings = TINY + ["device=cuda", "train.steps=10", "train.checkpoint_every=10", "train.monitor_every=null",
                       "train.precision=fp32", "train.tf32=false", "optim.lr_g=1e-3", "optim.lr_d=1e-3"]  # fmt: skip
    for mode in ("none", "max"):
        run_training(tmp_path / mode, settings + [f"train.compile={mode}"])
    eager, graphs = (ckpt.load(ckpt.find_latest(tmp_path / mode)) for mode in ("none", "max"))
    a, b = (torch.cat([v.flatten() for v in s["discriminator"].values() if v.is_floating_point()])
            for s in (eager, graphs))  # fmt: skip
    assert (a - b).norm() <= 1e-3 * a.norm()


def test_gradient_norms_under_cuda_graphs_are_those_of_eager_training(tmp_path):
    """compile=max keeps gradients in CUDA-graph memory that the next update's graphs reuse: the monitor's
    gradient norms (measured right after each update) match eager training's."""
    from test_train import scalar_events

    settings = TINY + ["device=cuda", "train.steps=4", "train.monitor_every=2", "train.checkpoint_every=4",
                       "train.precision=fp32", "train.tf32=false"]  # fmt: skip
    norms = {}
    for mode in ("none", "max"):
        run_training(tmp_path / mode, settings + [f"train.compile={mode}"])
        norms[mode] = {t: [e.value for e in scalar_events(tmp_path / mode, t)] for t in ("grad_norm/d", "grad_norm/g")}
    for tag, eager in norms["none"].items():
        assert len(eager) == 2 and norms["max"][tag] == pytest.approx(eager, rel=1e-2), tag


# Training long enough to count modes, without the checkpoints, grids and logs of every other step.
QUALITY = TINY + ["device=cuda", "train.steps=200", "train.eval_every=200", "train.checkpoint_every=200",
                  "train.sample_every=200", "train.log_every=50", "train.monitor_every=null"]  # fmt: skip


@pytest.fixture(scope="module")
def fp32_eager(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("fp32_eager")
    return run_training(run_dir, QUALITY + ["train.precision=fp32", "train.compile=none", "train.tf32=false"])


@pytest.mark.parametrize("mode", [["train.precision=bf16"], ["train.compile=max"], ["train.compile=default"]])
def test_fast_modes_train_like_fp32_eager(fp32_eager, tmp_path, mode):
    fast = run_training(tmp_path, QUALITY + mode)
    assert abs(fast["synthetic/modes_covered"] - fp32_eager["synthetic/modes_covered"]) <= 2


def test_the_augmentations_and_adas_heuristic_never_wait_on_the_host():
    """No copy between host and GPU in a step's augmentation (ada, diffaugment), in the heuristic's
    bookkeeping or in the snapshot each step takes: p and r_t are read only when logged."""
    from sngan.training.augment import Augment

    x = torch.rand(16, 3, 32, 32, device=CUDA) * 2 - 1
    for name in ("ada", "diffaugment"):
        aug = Augment(name, CUDA, 0.5, adaptive=True, interval=2)
        aug(x)  # first calls: kernels and caches
        torch.cuda.synchronize()
        torch.cuda.set_sync_debug_mode("error")
        try:
            for _ in range(4):
                out = aug(x)
                aug.observe(out[:8].mean(dim=(1, 2, 3)), 8)
                aug.load_state_dict(aug.state_dict(CUDA))  # what snapshot and rollback do
        finally:
            torch.cuda.set_sync_debug_mode("default")
        assert out.shape == x.shape and aug.p.device.type == "cuda"
