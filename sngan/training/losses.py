"""GAN losses as pure functions of the discriminator's raw outputs.

Each registered loss is a pair ``(d_loss(real, fake), g_loss(fake))`` where
``real`` and ``fake`` are D's outputs (logits, shape ``[N]``) on real and
generated images. ``nonsaturating`` is the paper's "standard" loss. The penalties
some baselines add to D's loss (constraint group; sngan/models/constraints.py)
are here too: the gradient penalty and the orthonormal regularizer.
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


def interpolates(real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """x^ = eps x + (1 - eps) x~ with one eps ~ U[0, 1] per image (WGAN-GP, the paper's Eq. 30)."""
    eps = torch.rand(len(real), *([1] * (real.dim() - 1)), device=real.device, dtype=real.dtype)
    return eps * real + (1.0 - eps) * fake


def gradient_penalty(out: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
    """E[(||grad_x^ D(x^)||_2 - 1)^2] (Eq. 31, without lambda) from ``out`` = D's raw outputs (logits, also
    under the standard loss: GAN-GP's penalty is on the logit) at ``inputs`` (requires_grad). The gradient
    of the summed outputs is each image's own because D reads each image alone (no BatchNorm in D where a
    gradient penalty is used); create_graph lets the penalty train D."""
    (grad,) = torch.autograd.grad(out.sum(), inputs, create_graph=True)
    return (grad.flatten(1).norm(dim=1) - 1.0).square().mean()
