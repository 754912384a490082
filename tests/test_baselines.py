"""The paper's baselines for D (the constraint group): what each does to D, to its loss and after its
update, checked against their definitions; start-up refusals of combinations the paper does not define;
a two-step run of each on both architectures; resume with a constraint."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
from helpers import TINY, compose_cfg, run_training, validated
from omegaconf import OmegaConf
from torch import nn

from sngan.config import ConfigError
from sngan.models import CONSTRAINTS, build_models, is_spectrally_normalized
from sngan.models.constraints import CONSTANTS, orthonormal_penalty
from sngan.models.layers import GainFreeBatchNorm2d, GainFreeLayerNorm2d, UnitRows
from sngan.training import step as step_module
from sngan.training.losses import LOSSES, gradient_penalty
from sngan.training.resume import check_architecture, stored_constraint
from sngan.training.step import DRules, Recipe, d_step, g_step
from sngan.utils import checkpoint as ckpt

CONFIGS = Path(__file__).resolve().parents[1] / "sngan" / "configs" / "constraint"
NAMES = ["sn", "none", "weight_clip", "wgan_gp", "gan_gp", "bn", "ln", "wn", "orthonormal", "wgan_gp_sn"]
# The loss each constraint runs with in the smoke runs: the one the paper pairs it with, else the default.
LOSS_OF = {"weight_clip": "nonsaturating", "wgan_gp": "wasserstein", "gan_gp": "nonsaturating"}
LOSS_OF["wgan_gp_sn"] = "wasserstein"


def layers(net: nn.Module) -> list[nn.Module]:
    return [m for m in net.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]


def test_every_option_is_registered_with_the_papers_constants_in_its_yaml():
    assert CONSTRAINTS.names() == sorted(NAMES)
    assert sorted(p.stem for p in CONFIGS.glob("*.yaml")) == sorted(NAMES)
    for name in NAMES:
        cfg = validated(compose_cfg(TINY + [f"constraint={name}", f"loss={LOSS_OF.get(name, 'hinge')}"]))
        set_ = {k for k in CONSTANTS if getattr(cfg.constraint, k) is not None}
        assert cfg.constraint.name == name and set_ == set(CONSTRAINTS.get(name).constants), name
        assert cfg.model.spectral_norm == cfg.constraint.spectral_norm == CONSTRAINTS.get(name).spectral_norm
    read = {name: OmegaConf.load(CONFIGS / f"{name}.yaml") for name in NAMES}
    assert read["weight_clip"].clip == 0.01  # section 4.1: c = 0.01
    assert read["wgan_gp"].gp_weight == read["gan_gp"].gp_weight == read["wgan_gp_sn"].gp_weight == 10.0
    assert read["orthonormal"].ortho_weight == 1e-4  # ours: Brock et al.'s
    assert validated(compose_cfg(TINY)).constraint.name == "sn"  # today's behaviour by default


@pytest.mark.parametrize(
    "overrides,pattern",
    [
        (["constraint=wgan_gp"], r"constraint=wgan_gp with loss=hinge.*Eqs\. 29-31.*Use loss=wasserstein"),
        (["constraint=wgan_gp_sn", "loss=nonsaturating"], r"Tables 7 and 8.*Use loss=wasserstein"),
        (["constraint=gan_gp", "loss=wasserstein"], r"standard loss.*constraint=wgan_gp.*Use loss=nonsaturating"),
        (["constraint=weight_clip", "loss=wasserstein"], r"Weight clipping.*Use loss=nonsaturating"),
        (["constraint=sn", "model.spectral_norm=false"], r"model\.spectral_norm=false contradicts constraint=sn"),
        (["constraint=none", "model.spectral_norm=true"], r"use constraint=none"),
        (["constraint=wn", "constraint.spectral_norm=true"], r"fixed by the name.*sn, wgan_gp_sn"),
        (["constraint=wn", "constraint.gp_weight=10"], r"constraint=wn does not use it.*gan_gp, wgan_gp, wgan_gp_sn"),
        (["constraint=weight_clip", "loss=nonsaturating", "constraint.clip=0"], r"constraint\.clip=0.*greater than 0"),
        (
            ["constraint=bn", "model=resnet32", "model.conditional=true", "dataset.modes=3"],
            r"constraint=bn with model\.conditional=true is not defined.*constraint=none or constraint=sn",
        ),
    ],
)
def test_combinations_the_paper_does_not_define_are_refused_at_start_up(overrides, pattern):
    with pytest.raises(ConfigError, match=pattern) as caught:
        validated(compose_cfg(TINY + overrides))
    assert "\n" not in str(caught.value)  # one paragraph


def test_clipped_weights_stay_within_c_after_the_update_and_a_skipped_update_leaves_them():
    torch.manual_seed(0)
    g, d = build_models("cnn32", 16, 0.125, constraint="weight_clip")
    opt = torch.optim.Adam(d.parameters(), lr=0.1)  # big steps: most weights leave [-c, c] before the clip
    rules = DRules(clip=0.01)
    d_step(g, d, opt, torch.randn(4, 3, 32, 32), None, Recipe(LOSSES.get("nonsaturating"), 16, rules=rules))
    weights = torch.cat([m.weight.detach().flatten() for m in layers(d)])
    assert weights.abs().max() <= 0.01 and (weights.abs() == 0.01).float().mean() > 0.5
    assert any(m.bias.abs().max() > 0.01 for m in layers(d) if m.bias is not None)  # only weights are clipped
    before = copy.deepcopy(d.state_dict())
    nan = torch.full((4, 3, 32, 32), float("nan"))
    stats = d_step(g, d, opt, nan, None, Recipe(LOSSES.get("nonsaturating"), 16, rules=rules))
    assert not bool(stats["finite/d"])
    assert all(torch.equal(before[k], v) for k, v in d.state_dict().items())


def finite_difference_gradients(d: nn.Module, x: torch.Tensor, h: float = 1e-5) -> torch.Tensor:
    """dD(x_i)/dx_i of every image, each input element by central differences (float64, eval mode)."""
    grads = []
    with torch.no_grad():
        for image in x:
            basis = torch.eye(image.numel(), dtype=x.dtype).view(-1, *image.shape) * h
            grads.append((d(image + basis) - d(image - basis)) / (2 * h))
    return torch.stack(grads).view_as(x)


@pytest.mark.parametrize("name", ["wgan_gp", "wgan_gp_sn"])  # gan_gp: the same penalty, another loss
def test_the_gradient_penalty_equals_its_definition_by_finite_differences_of_d_at_the_interpolates(name, monkeypatch):
    torch.manual_seed(0)
    g, d = build_models("cnn32", 8, 0.0625, constraint=name)
    d = d.double()  # G stays fp32: its images are cast to the real images' dtype
    for m in d.modules():  # SN divides in fp32 (FP32SpectralNorm) whatever the weights' dtype: u, v stay fp32
        if is_spectrally_normalized(m):
            sn = m.parametrizations.weight[0]
            sn._u, sn._v = sn._u.float(), sn._v.float()
    seen, original = {}, step_module.interpolates

    def recorded(real, fake):
        seen["real"], seen["fake"] = real.clone(), fake.clone()
        seen["mixed"] = original(real, fake)
        return seen["mixed"]

    monkeypatch.setattr(step_module, "interpolates", recorded)
    opt = torch.optim.Adam(d.parameters(), lr=0.0)  # the weights stay: D after the update is D at the penalty
    real = torch.rand(2, 3, 32, 32, dtype=torch.float64) * 2 - 1
    stats = d_step(g, d, opt, real, None, Recipe(LOSSES.get(LOSS_OF[name]), 8, rules=DRules(gp_weight=10.0)))
    mixed = seen["mixed"].detach()
    eps = (mixed - seen["fake"]) / (seen["real"] - seen["fake"])  # x^ = eps x + (1 - eps) x~, one eps an image
    assert torch.allclose(eps, eps.flatten(1)[:, :1, None, None].expand_as(eps), atol=1e-9)
    assert ((eps >= 0) & (eps <= 1)).all()
    # eval mode reads the u, v the train-mode call left: the same sigma, the same function of the images
    grads = finite_difference_gradients(d.eval(), mixed)
    expected = 10.0 * ((grads.flatten(1).norm(dim=1) - 1) ** 2).mean()
    assert grads.abs().max() > 0
    assert float(stats["penalty/d"]) == pytest.approx(float(expected), rel=1e-5)


def test_gradient_penalty_of_a_linear_d_is_known_in_closed_form():
    w = torch.randn(12, dtype=torch.float64)
    x = torch.randn(5, 12, dtype=torch.float64, requires_grad=True)
    assert float(gradient_penalty(x @ w, x)) == pytest.approx(float((w.norm() - 1) ** 2), rel=1e-12)


def _u_vectors(d: nn.Module) -> list[torch.Tensor]:
    return [m.parametrizations.weight[0]._u.clone() for m in d.modules() if is_spectrally_normalized(m)]


@pytest.mark.parametrize("model", ["cnn32", "resnet32"])
def test_with_the_gradient_penalty_the_power_iteration_still_advances_once_per_d_update(model):
    torch.manual_seed(0)
    g, d = build_models(model, 16, 0.125, constraint="wgan_gp_sn")
    opt_d = torch.optim.Adam(d.parameters(), lr=0.0)
    sn = [m for m in d.modules() if is_spectrally_normalized(m)]
    assert len(sn) == len(layers(d)) and all(m.parametrizations.weight[0].gamma.requires_grad for m in sn)
    expected = []
    for m, u in zip(sn, _u_vectors(d)):
        w = m.parametrizations.weight.original.detach().flatten(1)
        v = nn.functional.normalize(w.t() @ u, dim=0, eps=1e-12)
        expected.append(nn.functional.normalize(w @ v, dim=0, eps=1e-12))
    stats = d_step(
        g,
        d,
        opt_d,
        torch.randn(4, 3, 32, 32),
        None,
        Recipe(LOSSES.get("wasserstein"), 16, rules=DRules(gp_weight=10.0)),
    )
    assert float(stats["penalty/d"]) > 0
    for got, want in zip(_u_vectors(d), expected):
        assert torch.allclose(got, want, atol=1e-6)
    before = _u_vectors(d)
    g_step(
        g, d, torch.optim.Adam(g.parameters(), lr=1e-3), 4, torch.device("cpu"), Recipe(LOSSES.get("wasserstein"), 16)
    )
    assert all(torch.equal(a, b) for a, b in zip(_u_vectors(d), before))


@pytest.mark.parametrize("model", ["cnn32", "resnet32"])
def test_weight_normalized_rows_have_the_gains_norm_before_and_after_an_update(model):
    torch.manual_seed(0)
    g, d = build_models(model, 16, 0.125, constraint="wn")
    for _ in range(2):
        for m in layers(d):
            assert isinstance(m.parametrizations.weight[0], UnitRows) and not is_spectrally_normalized(m)
            rows = m.weight.detach().flatten(1).norm(dim=1)
            torch.testing.assert_close(rows, torch.ones_like(rows), rtol=0, atol=1e-6)  # the gain: 1
        d_step(
            g,
            d,
            torch.optim.Adam(d.parameters(), lr=0.05),
            torch.randn(4, 3, 32, 32),
            None,
            Recipe(LOSSES.get("hinge"), 16),
        )


def penalty_of(net: nn.Module) -> float:
    return float(orthonormal_penalty(net).detach())


def test_the_orthonormal_penalty_is_zero_for_orthogonal_matrices_and_positive_otherwise():
    torch.manual_seed(0)
    for shape in [(6, 6), (4, 9), (9, 4)]:  # square, wide (orthonormal rows), tall (orthonormal columns)
        layer = nn.Linear(shape[1], shape[0]).double()
        nn.init.orthogonal_(layer.weight)
        assert penalty_of(layer) == pytest.approx(0.0, abs=1e-12)
        with torch.no_grad():
            layer.weight.mul_(1.1)
        assert penalty_of(layer) > 0.1
    conv = nn.Conv2d(3, 4, 3).double()  # a (4, 27) matrix
    assert penalty_of(conv) > 0
    # the smaller Gram matrix: Eq. 14's ||W^T W - I||^2 less the constant n - m, so the same gradient
    w = conv.weight.detach().flatten(1).clone().requires_grad_(True)
    literal = ((w.T @ w - torch.eye(27, dtype=w.dtype)) ** 2).sum()
    (grad_literal,) = torch.autograd.grad(literal, w)
    orthonormal_penalty(conv).backward()
    torch.testing.assert_close(conv.weight.grad.flatten(1), grad_literal)
    assert float(literal.detach()) == pytest.approx(penalty_of(conv) + 27 - 4, rel=1e-9)


@pytest.mark.parametrize("model", ["cnn32", "resnet32"])
def test_orthonormal_regularization_starts_from_orthonormal_weights(model):
    torch.manual_seed(0)
    _, d = build_models(model, 16, 0.125, constraint="orthonormal")
    assert penalty_of(d) < 1e-8
    assert penalty_of(build_models(model, 16, 0.125, constraint="none")[1]) > 1


@pytest.mark.parametrize("model", ["cnn32", "resnet32"])
@pytest.mark.parametrize("name,kind", [("bn", GainFreeBatchNorm2d), ("ln", GainFreeLayerNorm2d)])
def test_no_learnable_gain_in_the_papers_bn_and_ln(model, name, kind):
    _, plain = build_models(model, 16, 0.125, constraint="none")
    _, d = build_models(model, 16, 0.125, constraint=name)
    norms = [m for m in d.modules() if isinstance(m, kind)]
    # cnn: after convolutions 2-7; resnet32: after every residual convolution but the first block's first
    assert len(norms) == (6 if model == "cnn32" else 7)
    for m in norms:
        assert getattr(m, "weight", None) is None
        assert [n for n, _ in m.named_parameters()] == ["bias"] and m.bias.shape == (m.bias.numel(),)
    extra = sum(p.numel() for p in d.parameters()) - sum(p.numel() for p in plain.parameters())
    assert extra == sum(m.bias.numel() for m in norms)  # a bias per channel, nothing else
    assert not any(is_spectrally_normalized(m) for m in d.modules())


def test_no_learnable_gain_in_the_papers_wn():
    _, d = build_models("cnn32", 16, 0.125, constraint="wn")
    names = [n for n, _ in d.named_parameters()]
    assert names and all(n.endswith(("parametrizations.weight.original", ".bias")) for n in names)
    assert sum(p.numel() for p in d.parameters()) == sum(
        p.numel() for p in build_models("cnn32", 16, 0.125)[1].parameters()
    )


def test_a_batchnorm_d_normalizes_real_and_fake_by_their_own_statistics():
    torch.manual_seed(0)
    g, d = build_models("cnn32", 16, 0.125, constraint="bn")
    twin, real = copy.deepcopy(d), torch.randn(4, 3, 32, 32)
    how = Recipe(LOSSES.get("hinge"), 16, rules=DRules(batch_stats=True))
    stats = d_step(g, d, torch.optim.Adam(d.parameters()), real, None, how)
    with torch.no_grad():
        assert float(stats["d_out/real"]) == pytest.approx(float(twin(real).mean()), rel=1e-5)


def test_old_checkpoints_map_model_spectral_norm_to_the_constraint_and_another_is_refused():
    assert stored_constraint({"model": {"spectral_norm": False}}) == "none"
    assert stored_constraint({"model": {}}) == "sn"  # from before the key: SN
    assert stored_constraint({"model": {"spectral_norm": True}, "constraint": {"name": "wn"}}) == "wn"
    old = {"model": {"name": "cnn32", "spectral_norm": False}}
    now = {"model": {"name": "cnn32", "z_dim": 128, "width": 1.0, "spectral_norm": False, "conditional": False}}
    check_architecture(old, now | {"constraint": {"name": "none"}}, Path("x.pt"))
    with pytest.raises(ckpt.CheckpointError, match=r"constraint: 'none' in the checkpoint, 'wn' now"):
        check_architecture(old, now | {"constraint": {"name": "wn"}}, Path("x.pt"))


def test_an_old_checkpoint_without_spectral_norm_evaluates_as_constraint_none():
    from sngan.cli.settings import check_stored

    legacy = Path(__file__).parent / "fixtures" / "legacy_cb20605" / "ckpt_00000002.pt"
    stored = ckpt.load(legacy)["config"]
    assert "constraint" not in stored
    assert check_stored(stored).constraint.name == "sn"
    stored["model"]["spectral_norm"] = False
    cfg = check_stored(stored)
    assert (cfg.constraint.name, cfg.model.spectral_norm) == ("none", False)


def overrides_for(name: str, model: str) -> list[str]:
    return TINY + [f"constraint={name}", f"loss={LOSS_OF.get(name, 'hinge')}", f"model={model}", "model.width=0.0625"]


@pytest.mark.parametrize("model", ["cnn32", pytest.param("resnet32", marks=pytest.mark.slow)])  # cnn32: the fast one
@pytest.mark.parametrize("name", NAMES)
def test_two_step_run_of_every_constraint(tmp_path, name, model):
    run_training(tmp_path, overrides_for(name, model) + ["train.steps=2", "train.monitor_every=1"])
    state = ckpt.load(ckpt.checkpoint_path(tmp_path, 2))
    assert state["config"]["constraint"]["name"] == name
    assert state["config"]["model"]["spectral_norm"] is CONSTRAINTS.get(name).spectral_norm
    assert all(torch.isfinite(v).all() for v in state["discriminator"].values() if v.is_floating_point())
    keys = " ".join(state["discriminator"])
    assert ("running_mean" in keys) == (name == "bn") and ("_u" in keys) == (name in ("sn", "wgan_gp_sn"))
    if name == "weight_clip":
        weights = [v for k, v in state["discriminator"].items() if k.endswith("weight")]
        assert max(float(w.abs().max()) for w in weights) <= 0.01


@pytest.mark.parametrize("name", ["wgan_gp_sn", "bn"])
def test_resume_with_a_constraint_continues_with_identical_state(tmp_path, name):
    """A penalty (and SN with its gain), or BatchNorm's running statistics: 4 steps straight vs 2 + 2."""
    common = overrides_for(name, "cnn32") + ["train.steps=4", "train.n_dis=2", "train.keep_checkpoints=10"]
    run_training(tmp_path / "straight", common)
    run_training(tmp_path / "resumed", common + [f"resume={ckpt.checkpoint_path(tmp_path / 'straight', 2)}"])
    a = ckpt.load(ckpt.checkpoint_path(tmp_path / "straight", 4))
    b = ckpt.load(ckpt.checkpoint_path(tmp_path / "resumed", 4))
    for net in ("generator", "discriminator"):
        assert a[net].keys() == b[net].keys()
        assert all(torch.equal(a[net][k], b[net][k]) for k in a[net]), net
    assert torch.equal(a["rng"]["torch"], b["rng"]["torch"])
    with pytest.raises(ckpt.CheckpointError, match=rf"constraint: '{name}' in the checkpoint, 'none' now"):
        run_training(tmp_path / "other", TINY + ["constraint=none", "train.steps=4", f"resume={tmp_path / 'straight'}"])


@pytest.mark.slow
@pytest.mark.parametrize("name", ["wgan_gp_sn", "bn", "weight_clip"])
def test_a_constraint_trains_under_torchrun_with_identical_replicas(tmp_path, name):
    """The penalty's double backward, BatchNorm's two calls and the clipping under DistributedDataParallel
    (2 CPU processes, gloo): the ranks' networks stay identical."""
    import os
    import subprocess
    import sys

    args = overrides_for(name, "cnn32") + ["train.steps=2", "device=cpu", f"hydra.run.dir={tmp_path / 'run'}"]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node=2", "--standalone", "-m", "sngan.train"]
    out = subprocess.run(cmd + args, env=os.environ | {"OMP_NUM_THREADS": "1"}, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-3000:]
    state = ckpt.load(ckpt.find_latest(tmp_path / "run"))
    assert state["step"] == 2 and state["replicas"][0] == state["replicas"][1]
