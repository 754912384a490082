"""One discriminator update and one generator update.

Following the paper's Algorithm 1, the power iteration of spectral
normalization advances exactly once per D update: real and fake images pass
through D in a single call in train mode. Inside the G update D is read in
eval mode, which reuses the stored u and v without advancing them (the
gradient is the same either way: u and v are constants to autograd). The
official Chainer code differs: it calls D separately on real and fake (two
iterations per D update) and once more in the G update.

The baselines of the constraint group (``DRules``) keep this: a gradient
penalty reads D at the interpolates in that same train-mode call (real, fake
and interpolates concatenated), so the power iteration still advances once and
the penalty sees the sigma the loss sees; weight clipping acts after the
optimizer step, inside the update. Only a BatchNorm D (constraint=bn, no SN) is
called on real and fake separately, each normalized by its own statistics, and
is read in train mode in the G update, as chainer-gan-lib's updater does.

Each update is applied only if its loss, gradients and weights are all
finite; "finite/d" and "finite/g" report the check and the loop decides what
a skipped update means (stop or count it). Other values are detached scalar
tensors; the loop decides when to read them. Nothing here waits for the
device: the check and the skip happen on it.

``speed`` (sngan/training/speed.py) sets the networks' precision (bf16 autocast; losses
from fp32 outputs, backward outside autocast) and, under compile=max, marks
each update as a new CUDA-graph step.

Under torchrun the loop passes the DistributedDataParallel wrapper of the
network being updated and the plain module of the other one: D's gradients are
all-reduced in the D update only, G's in the G update only, and a skipped
update is skipped on every rank.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from sngan.models.constraints import clip_weights_
from sngan.models.sampling import sample_y, sample_z
from sngan.training.augment import Augment
from sngan.training.losses import Loss, gradient_penalty, interpolates
from sngan.training.speed import Speed, autocast, mark_step, memory_format
from sngan.utils import distributed
from sngan.utils.distributed import all_agree

EAGER = Speed()


@dataclass(frozen=True)
class DRules:
    """What D's updates do beyond the loss (the constraint group's constants; zeros and None: nothing)."""

    gp_weight: float = 0.0  # lambda of the gradient penalty at interpolates of real and fake (WGAN-GP, GAN-GP)
    penalty: Callable[[nn.Module], torch.Tensor] | None = None  # a term of D's loss from D's weights (orthonormal)
    penalty_weight: float = 0.0  # its coefficient
    clip: float | None = None  # D's weights clamped to [-clip, clip] after every D update
    batch_stats: bool = False  # BatchNorm in D: real and fake in separate calls, D in train mode in the G update


PLAIN = DRules()


@dataclass(frozen=True)
class Recipe:
    """What D's and G's updates need beside the networks, their optimizers and the real batch."""

    loss: Loss
    z_dim: int
    num_classes: int = 0  # 0: unconditional
    fake_cdf: torch.Tensor | None = None  # conditional: the classes of the fakes (sample_y); None: uniform
    augment: Augment | None = None  # what D sees of every image, real and fake
    rules: DRules = PLAIN
    speed: Speed = EAGER


class Boundary(torch.autograd.Function):
    """A copy both ways between two compiled graphs: forward, the next graph reads a copy of the previous
    one's output; backward, the previous graph's backward reads a copy of the gradient the next one's
    returned (a plain ``clone`` passes the gradient through as it is)."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        return x.clone()

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        return grad.clone()


def _update_if_finite(opt: torch.optim.Optimizer, loss: torch.Tensor, gate: torch.Tensor | None = None) -> torch.Tensor:
    """Backpropagate ``loss`` and step ``opt`` only if the loss, every gradient and every weight is
    finite (and ``gate``, a bool tensor, is true); otherwise leave the weights and the optimizer's moments as
    they are. Returns the check as a
    bool tensor of one element, without waiting for it: one fused kernel checks every tensor, and a fused
    Adam skips a flagged update on the device (the loop reads the flags once per step)."""
    params = [p for group in opt.param_groups for p in group["params"]]
    opt.zero_grad(set_to_none=True)
    loss.backward()
    checked = [loss.detach().reshape(1)] + [p.grad for p in params if p.grad is not None]
    found = torch.zeros(1, device=loss.device)
    with torch.no_grad():  # scales by 1 (a no-op) and sets ``found`` where a value is NaN or infinite
        torch._amp_foreach_non_finite_check_and_unscale_(checked, found, found + 1)
        weights_finite = torch.isfinite(torch.stack(torch._foreach_norm([p.detach() for p in params]))).all()
    finite = (found == 0) & weights_finite
    finite = all_agree(finite if gate is None else finite & gate)  # torchrun: skipped on every rank if on any
    if all(group.get("fused") for group in opt.param_groups):
        opt.found_inf = (~finite).float().reshape(())  # type: ignore[attr-defined]  # what GradScaler hands fused Adam
        try:
            opt.step()
        finally:
            del opt.found_inf  # type: ignore[attr-defined]
    elif finite:  # optimizers without the device-side skip: one host sync per update
        opt.step()
    return finite


def call(net: nn.Module, x: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
    """``net(x)``, or ``net(x, y)`` for a class-conditional network."""
    return net(x) if y is None else net(x, y)


def d_step(
    generator: nn.Module,
    discriminator: nn.Module,
    opt_d: torch.optim.Optimizer,
    real: torch.Tensor,
    real_y: torch.Tensor | None,
    how: Recipe,
) -> dict[str, torch.Tensor]:
    """Update D once on ``real`` (with its labels ``real_y`` when conditional) and as many fresh fakes
    (of classes drawn by ``sample_y`` with ``how.fake_cdf``), D seeing both through ``how.augment`` (and ADA's
    heuristic seeing D's outputs on the real ones), with the constraint's penalty and clipping
    (``how.rules``). "loss/d" is the loss alone; a penalty is reported as "penalty/d"."""
    n, speed, augment, rules = len(real), how.speed, how.augment, how.rules
    mark_step(speed)
    real = real.contiguous(memory_format=memory_format(speed))
    fake_y = sample_y(n, how.num_classes, real.device, how.fake_cdf)
    with autocast(speed, real.device):
        with torch.no_grad():
            fake = call(generator, sample_z(n, how.z_dim, real.device), fake_y)
        both_y = None if fake_y is None or real_y is None else torch.cat([real_y, fake_y])
        both = torch.cat([real, fake.to(real.dtype)])
        out, mixed = _read_d(discriminator, augment(both) if augment is not None else both, both_y, rules)
    out_real, out_fake = out[:n], out[n : 2 * n]
    if augment is not None:
        augment.observe(out_real, n * distributed.current().world)
    loss_d = how.loss.d_loss(out_real, out_fake)
    penalty = _penalty(discriminator, out[2 * n :], mixed, rules)  # outside autocast, as backward is
    finite = _update_if_finite(opt_d, loss_d if penalty is None else loss_d + penalty)
    if rules.clip is not None:  # after the step; a skipped update leaves the (clipped) weights as they were
        clip_weights_(discriminator, rules.clip)
    stats = {
        "finite/d": finite,
        "loss/d": loss_d.detach(),
        "d_out/real": out_real.detach().mean(),
        "d_out/fake": out_fake.detach().mean(),
    }
    return stats | ({"penalty/d": penalty.detach()} if penalty is not None else {})


def _read_d(
    discriminator: nn.Module, seen: torch.Tensor, y: torch.Tensor | None, rules: DRules
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """D's outputs (fp32) on ``seen`` (real, then fake) in train mode and, under a gradient penalty, on
    interpolates of the two after them; returns the outputs and the interpolates (None without a penalty)."""
    n = len(seen) // 2
    if rules.batch_stats:  # no SN here: two calls cost no extra power iteration
        halves = [(seen[:n], None if y is None else y[:n]), (seen[n:], None if y is None else y[n:])]
        return torch.cat([call(discriminator, x, part_y) for x, part_y in halves]).float(), None
    if not rules.gp_weight:
        return call(discriminator, seen, y).float(), None
    if y is not None:
        raise ValueError("the gradient penalty is defined for an unconditional D only (refused at start-up)")
    # The interpolates join real and fake in the one train-mode call: SN's u advances once per D update, and
    # the penalty differentiates the very function the loss does. torch.compile'd modules cannot be
    # differentiated twice, so the penalized update reads the plain module (the rest of the run stays compiled).
    mixed = interpolates(seen[:n].detach(), seen[n:].detach()).requires_grad_(True)
    eager = getattr(discriminator, "_orig_mod", discriminator)
    return call(eager, torch.cat([seen, mixed]), None).float(), mixed


def _penalty(
    discriminator: nn.Module, out_mixed: torch.Tensor, mixed: torch.Tensor | None, rules: DRules
) -> torch.Tensor | None:
    """The constraint's term of D's loss: lambda * the gradient penalty, or its weight penalty (the orthonormal
    one) times its constant, or None."""
    if mixed is not None:
        return rules.gp_weight * gradient_penalty(out_mixed, mixed)
    if rules.penalty is not None and rules.penalty_weight:
        return rules.penalty_weight * rules.penalty(discriminator)
    return None


def g_step(
    generator: nn.Module,
    discriminator: nn.Module,
    opt_g: torch.optim.Optimizer,
    batch: int,
    device: torch.device,
    how: Recipe,
    gate: torch.Tensor | None = None,
) -> dict[str, torch.Tensor]:
    """Update G once on ``batch`` fresh samples (of classes drawn by ``sample_y`` with ``how.fake_cdf`` when
    conditional); D's weights, u and v stay put. ``how.rules.batch_stats`` (BatchNorm in D, no SN): D is read
    in train mode, normalizing the fakes by their own statistics as in its own update (its running
    statistics, which no update uses, move too). ``gate`` (a bool tensor): applied only where it is true
    (on the device, no wait), as ``finite/g`` then says."""
    speed, augment = how.speed, how.augment
    if not how.rules.batch_stats:
        discriminator.eval()
    discriminator.requires_grad_(False)
    try:
        mark_step(speed)
        y = sample_y(batch, how.num_classes, device, how.fake_cdf)
        with autocast(speed, device):
            fake = call(generator, sample_z(batch, how.z_dim, device), y)
            if speed.compile != "none":  # an explicit boundary: D's compiled graph reads a copy, never the output
                fake = Boundary.apply(fake)  # of G's (chained CUDA-graph trees fail: pytorch#160281, #152887)
            out_fake = call(discriminator, augment(fake) if augment is not None else fake, y).float()
        loss_g = how.loss.g_loss(out_fake)
        finite = _update_if_finite(opt_g, loss_g, gate)
    finally:
        discriminator.requires_grad_(True)
        discriminator.train()
    return {"finite/g": finite, "loss/g": loss_g.detach()}
