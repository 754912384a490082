"""GAN losses as pure functions of the discriminator's raw outputs.

Each registered loss is a pair ``(d_loss(real, fake), g_loss(fake))`` where
``real`` and ``fake`` are D's outputs (logits, shape ``[N]``) on real and
generated images. ``nonsaturating`` is the paper's "standard" loss.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch
from torch.nn import functional as F

from sngan.registry import Registry


class Loss(NamedTuple):
    d_loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    g_loss: Callable[[torch.Tensor], torch.Tensor]


LOSSES: Registry[Loss] = Registry("loss")


def hinge_d(real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    return F.relu(1.0 - real).mean() + F.relu(1.0 + fake).mean()


def hinge_g(fake: torch.Tensor) -> torch.Tensor:
    return -fake.mean()


def nonsaturating_d(real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    # -log sigmoid(real) - log(1 - sigmoid(fake)), computed stably.
    return F.softplus(-real).mean() + F.softplus(fake).mean()


def nonsaturating_g(fake: torch.Tensor) -> torch.Tensor:
    return F.softplus(-fake).mean()


def wasserstein_d(real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    return fake.mean() - real.mean()


LOSSES.register("hinge")(Loss(hinge_d, hinge_g))
LOSSES.register("nonsaturating")(Loss(nonsaturating_d, nonsaturating_g))
LOSSES.register("wasserstein")(Loss(wasserstein_d, hinge_g))
