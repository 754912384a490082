import math

import pytest
import torch

from sngan.training.losses import LOSSES

REAL = torch.tensor([2.0, 0.5, -1.0])
FAKE = torch.tensor([-2.0, 0.0, 1.5])


def softplus(x: float) -> float:
    return math.log1p(math.exp(x))


def test_registered_losses():
    assert LOSSES.names() == ["hinge", "nonsaturating", "wasserstein"]


def test_hinge_on_hand_computed_values():
    loss = LOSSES.get("hinge")
    # relu(1 - real) = [0, 0.5, 2] -> 2.5/3 ; relu(1 + fake) = [0, 1, 2.5] -> 3.5/3
    assert loss.d_loss(REAL, FAKE).item() == pytest.approx(6.0 / 3, rel=1e-6, abs=1e-7)
    assert loss.g_loss(FAKE).item() == pytest.approx(-(-2.0 + 0.0 + 1.5) / 3, rel=1e-6, abs=1e-7)


def test_nonsaturating_on_hand_computed_values():
    loss = LOSSES.get("nonsaturating")
    want_d = sum(softplus(-r) for r in REAL.tolist()) / 3 + sum(softplus(f) for f in FAKE.tolist()) / 3
    assert loss.d_loss(REAL, FAKE).item() == pytest.approx(want_d, rel=1e-6, abs=1e-7)
    # -log sigmoid(fake)
    want_g = sum(-math.log(1 / (1 + math.exp(-f))) for f in FAKE.tolist()) / 3
    assert loss.g_loss(FAKE).item() == pytest.approx(want_g, rel=1e-6, abs=1e-7)


def test_nonsaturating_is_stable_for_large_logits():
    loss = LOSSES.get("nonsaturating")
    big = torch.tensor([1000.0, -1000.0])
    assert torch.isfinite(loss.d_loss(big, -big))
    assert loss.g_loss(torch.tensor([-1000.0])).item() == pytest.approx(1000.0, rel=1e-6)


def test_wasserstein_on_hand_computed_values():
    loss = LOSSES.get("wasserstein")
    assert loss.d_loss(REAL, FAKE).item() == pytest.approx((-0.5 / 3) - (1.5 / 3), rel=1e-6, abs=1e-7)
    assert loss.g_loss(FAKE).item() == pytest.approx(0.5 / 3, rel=1e-6, abs=1e-7)


def test_losses_are_differentiable_in_both_inputs():
    for name in LOSSES.names():
        real, fake = REAL.clone().requires_grad_(), FAKE.clone().requires_grad_()
        LOSSES.get(name).d_loss(real, fake).backward()
        assert real.grad is not None and fake.grad is not None
