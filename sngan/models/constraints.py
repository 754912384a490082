"""The paper's ways of keeping the discriminator in check (section 4.1, Appendix D), by short name.

Each registered ``Constraint`` says what it does to D when D is built (spectral normalization, gain-free
batch, layer or weight normalization, orthogonal initialisation), whether it adds a penalty to D's loss
(the gradient penalty: ``sngan.training.losses``; a penalty on D's weights, as the orthonormal term: its
``penalty``) and whether it acts after each D update (weight clipping: ``clip_weights_``). Its constants
(clip, gp_weight, ortho_weight, weight) are the config group ``constraint``'s; the step receives them as
numbers (``sngan.training.step.DRules``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from sngan.registry import Registry

from .layers import NORMS, apply_spectral_norm, apply_weight_norm, orthogonal_init_

CONSTANTS = ("clip", "gp_weight", "ortho_weight", "weight")  # the group's constants; a constraint reads some


@dataclass(frozen=True)
class Constraint:
    """What one option of the constraint group does (which losses and D it is defined with, for refusals)."""

    spectral_norm: bool = False  # SN on every D layer, one power iteration per D update
    sn_gain: bool = False  # and a learned scalar gain on each (WGAN-GP with SN: Appendix E.1, Eq. 32)
    norm: str | None = None  # "batch" | "layer": gain-free normalization after D's hidden convolutions
    weight_norm: bool = False  # every D layer's rows at unit norm (the gain fixed at 1: footnote 8)
    orthogonal_init: bool = False  # every D weight a random orthonormal operator at the start
    constants: tuple[str, ...] = ()  # which of CONSTANTS it reads
    losses: tuple[str, ...] | None = None  # the losses the paper pairs it with; None: any
    pairing: str = ""  # where the paper pairs it with those losses, for the refusal of another
    conditional: bool = False  # defined for the class-conditional projection D too
    penalty: Callable[[nn.Module], torch.Tensor] | None = None  # a term of D's loss from D's weights
    weighted_by: str | None = None  # the constant that multiplies ``penalty`` (one of ``constants``)

    def __post_init__(self) -> None:
        if self.penalty is not None and self.weighted_by not in self.constants:
            raise ValueError(
                f"a penalty is weighted by one of the constants it reads ({self.constants}), not {self.weighted_by!r}"
            )


CONSTRAINTS: Registry[Constraint] = Registry("constraint")


def orthonormal_penalty(net: nn.Module) -> torch.Tensor:
    """Sum over ``net``'s convolutions and dense layers of ||W^T W - I||_F^2 (Brock et al. 2016; the paper's
    Eq. 14), W the weight as a (d_out, d_in*h*w) matrix. Computed on the smaller Gram matrix (W W^T where
    d_out < d_in): ||W^T W - I_n||^2 and ||W W^T - I_m||^2 differ by the constant n - m, so the gradient
    is the same, and the smaller one is zero for any W with orthonormal rows or columns."""
    first = next(net.parameters())
    total = torch.zeros((), device=first.device, dtype=first.dtype)
    for module in net.modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            w = module.weight.flatten(1)
            gram = w @ w.T if w.shape[0] <= w.shape[1] else w.T @ w
            total = total + (gram - torch.eye(len(gram), device=w.device, dtype=w.dtype)).square().sum()
    return total


_STANDARD = "the paper trains every baseline but WGAN-GP with the standard loss (section 4.1, p. 6, Eq. 15)"
CONSTRAINTS.register("sn")(Constraint(spectral_norm=True, conditional=True))
CONSTRAINTS.register("none")(Constraint(conditional=True))
CONSTRAINTS.register("weight_clip")(
    Constraint(
        constants=("clip",),
        losses=("nonsaturating",),
        pairing=f"{_STANDARD}, weight clipping included (Table 2's 'Weight clipping' row); WGAN's pairing of "
        "clipping with the Wasserstein loss (Arjovsky et al.) is not the paper's baseline",
    )
)
CONSTRAINTS.register("wgan_gp")(
    Constraint(
        constants=("gp_weight",),
        losses=("wasserstein",),
        pairing="WGAN-GP is the Wasserstein loss plus the gradient penalty (section 4.1, Eqs. 29-31); the same "
        "penalty with the standard loss is constraint=gan_gp",
    )
)
CONSTRAINTS.register("gan_gp")(
    Constraint(
        constants=("gp_weight",),
        losses=("nonsaturating",),
        pairing="GAN-GP is the gradient penalty added to the standard loss (section 4.1, Eq. 15); with the "
        "Wasserstein loss it is constraint=wgan_gp",
    )
)
CONSTRAINTS.register("bn")(Constraint(norm="batch"))
CONSTRAINTS.register("ln")(Constraint(norm="layer"))
CONSTRAINTS.register("wn")(Constraint(weight_norm=True))
CONSTRAINTS.register("orthonormal")(
    Constraint(
        orthogonal_init=True, constants=("ortho_weight",), penalty=orthonormal_penalty, weighted_by="ortho_weight"
    )
)
CONSTRAINTS.register("wgan_gp_sn")(
    Constraint(
        spectral_norm=True,
        sn_gain=True,
        constants=("gp_weight",),
        losses=("wasserstein",),
        pairing="Tables 7 and 8 (Appendix E.1) combine spectral normalization with WGAN-GP, whose loss is the "
        "Wasserstein one",
    )
)


def spectral_norm_of(name: str) -> bool:
    """Whether constraint ``name`` attaches spectral normalization (model.spectral_norm follows it)."""
    return CONSTRAINTS.get(name).spectral_norm


def norm_layer(name: str) -> type[nn.Module] | None:
    """The gain-free normalization layer constraint ``name`` puts after D's hidden convolutions, if any."""
    norm = CONSTRAINTS.get(name).norm
    return NORMS[norm] if norm is not None else None


def constrain_(discriminator: nn.Module, name: str) -> nn.Module:
    """What constraint ``name`` does to a freshly built D's weights: orthogonal initialisation, weight or
    spectral normalization (each attached after initialisation, so it starts from those weights)."""
    rule = CONSTRAINTS.get(name)
    if rule.orthogonal_init:
        orthogonal_init_(discriminator)
    if rule.weight_norm:
        apply_weight_norm(discriminator)
    if rule.spectral_norm:
        apply_spectral_norm(discriminator, gain=rule.sn_gain)
    return discriminator


@torch.no_grad()
def clip_weights_(discriminator: nn.Module, clip: float) -> None:
    """Clamp the weight of every convolution and dense layer of D to [-clip, clip] ("c = 0.01 for the
    convolutional weight of each layer", section 4.1; biases move no Lipschitz constant and stay free)."""
    weights = [m.weight for m in discriminator.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    torch._foreach_clamp_min_(weights, -clip)
    torch._foreach_clamp_max_(weights, clip)
