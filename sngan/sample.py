"""``python -m sngan.sample``: PNGs, a grid or latent interpolations from a generator.

python -m sngan.sample ckpt=outputs/run/checkpoints/best.pt n=1000 out=samples
python -m sngan.sample ckpt=RUN/checkpoints/ckpt_00050000.pt n=64 grid=true
python -m sngan.sample ckpt=generator.safetensors n=8 interpolate=true frames=10
"""

from __future__ import annotations

import sys
from pathlib import Path

import hydra
import torch
from omegaconf import DictConfig
from torchvision.utils import save_image

from sngan.cli import ensure_folder, run_or_exit
from sngan.config_tools import SampleConfig, check_sample
from sngan.inference import load_generator
from sngan.provenance import resolve_device


def slerp(a: torch.Tensor, b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Spherical interpolation between rows of ``a`` and ``b`` at fractions ``t`` -> [len(a), len(t), z]."""
    a_n, b_n = a / a.norm(dim=1, keepdim=True), b / b.norm(dim=1, keepdim=True)
    omega = torch.acos((a_n * b_n).sum(1).clamp(-1 + 1e-7, 1 - 1e-7))[:, None, None]
    t = t[None, :, None]
    so = torch.sin(omega)
    return (torch.sin((1 - t) * omega) / so) * a[:, None] + (torch.sin(t * omega) / so) * b[:, None]


@torch.no_grad()
def sample(cfg: SampleConfig) -> list[Path]:
    """Write the requested images; return the files written."""
    device = resolve_device(cfg.device)
    generator = load_generator(cfg.ckpt, cfg.ema, str(device))
    gen = torch.Generator().manual_seed(cfg.seed)
    out = ensure_folder(cfg.out)
    if cfg.interpolate:
        a, b = torch.randn(2, cfg.n, generator.z_dim, generator=gen)
        z = slerp(a, b, torch.linspace(0, 1, cfg.frames)).reshape(-1, generator.z_dim)
    else:
        z = torch.randn(cfg.n, generator.z_dim, generator=gen)
    images = torch.cat([generator(c.to(device)).cpu() for c in z.split(cfg.batch_size)])
    images = images.clamp(-1, 1).add(1).div(2)
    if cfg.interpolate:
        path = out / "interpolation.png"
        save_image(images, path, nrow=cfg.frames)
        return [path]
    if cfg.grid:
        path = out / "grid.png"
        save_image(images, path, nrow=max(1, round(len(images) ** 0.5)))
        return [path]
    paths = [out / f"{i:06d}.png" for i in range(len(images))]
    for image, path in zip(images, paths):
        save_image(image, path)
    return paths


@hydra.main(version_base="1.3", config_path="pkg://sngan.configs", config_name="sample")
def main(raw: DictConfig) -> None:
    paths = run_or_exit(lambda: sample(check_sample(raw)))
    where = paths[0] if len(paths) == 1 else f"{len(paths)} PNGs in {paths[0].parent}"
    print(f"Wrote {where}.", file=sys.stderr)


if __name__ == "__main__":
    main()
