"""One discriminator update and one generator update.

Following the paper's Algorithm 1, the power iteration of spectral
normalization advances exactly once per D update: real and fake images pass
through D in a single call in train mode. Inside the G update D is read in
eval mode, which reuses the stored u and v without advancing them (the
gradient is the same either way: u and v are constants to autograd). The
official Chainer code differs: it calls D separately on real and fake (two
iterations per D update) and once more in the G update.

The functions return detached scalar tensors (no host sync); the loop
decides when to read them.
"""

from __future__ import annotations

import torch
from torch import nn

from sngan.losses import Loss


def sample_z(n: int, z_dim: int, device: torch.device) -> torch.Tensor:
    return torch.randn(n, z_dim, device=device)


def d_step(
    generator: nn.Module,
    discriminator: nn.Module,
    opt_d: torch.optim.Optimizer,
    loss: Loss,
    real: torch.Tensor,
    z_dim: int,
) -> dict[str, torch.Tensor]:
    """Update D once on ``real`` and as many fresh fakes."""
    n = len(real)
    with torch.no_grad():
        fake = generator(sample_z(n, z_dim, real.device))
    out = discriminator(torch.cat([real, fake]))
    out_real, out_fake = out[:n], out[n:]
    loss_d = loss.d_loss(out_real, out_fake)
    opt_d.zero_grad(set_to_none=True)
    loss_d.backward()
    opt_d.step()
    return {
        "loss/d": loss_d.detach(),
        "d_out/real": out_real.detach().mean(),
        "d_out/fake": out_fake.detach().mean(),
    }


def g_step(
    generator: nn.Module,
    discriminator: nn.Module,
    opt_g: torch.optim.Optimizer,
    loss: Loss,
    batch: int,
    z_dim: int,
    device: torch.device,
) -> dict[str, torch.Tensor]:
    """Update G once on ``batch`` fresh samples; D's weights, u and v stay put."""
    discriminator.eval()
    discriminator.requires_grad_(False)
    try:
        out_fake = discriminator(generator(sample_z(batch, z_dim, device)))
        loss_g = loss.g_loss(out_fake)
        opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        opt_g.step()
    finally:
        discriminator.requires_grad_(True)
        discriminator.train()
    return {"loss/g": loss_g.detach()}
