"""Augmentation that the discriminator sees on every image, real and fake, in the D and the G update: the
remedy for small datasets, where D otherwise memorizes the training images.

- ``diffaugment`` (Zhao et al., NeurIPS 2020): colour (brightness, saturation, contrast), translation (up
  to 1/8 of the image, zero fill) and cutout (a square of half the side, zeroed), each applied to each image
  with probability ``p`` (the paper: always, p = 1).
- ``ada`` (Karras et al., NeurIPS 2020): the transforms of its pipeline that make sense at 32 and 48 pixels
  (x-flip, 90-degree rotations, integer translation, isotropic scaling, rotation, anisotropic scaling,
  fractional translation; brightness, contrast, luma flip, hue rotation, saturation), each applied to each
  image with probability ``p``. ``p`` adapts from the overfitting heuristic r_t = E[sign(D(x_real))]: every
  ``interval`` D updates it moves by (images seen) / (``speed_kimg`` * 1000) toward more augmentation when
  r_t is above ``target`` and toward less below, within [0, 1].

Every transform is differentiable (G learns through it) and draws its randomness from torch's RNG on the
images' device. ``p`` and the heuristic's sums live on the device and are read only when logged: no host
wait per step. Under torchrun the sums are added over ranks before each adjustment, so every rank keeps
one ``p``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection
from typing import Any

import torch
import torch.nn.functional as F

from sngan.utils import distributed

AUGMENT_NAMES = ("none", "diffaugment", "ada")  # augment=none builds no Augment: D sees the images as they are
AUGMENT_POLICIES = ("color", "translation", "cutout")  # diffaugment's transforms
ADA_SPEED_KIMG = 500  # the ADA paper: p can go from 0 to 1 in 500k images


def _chance(x: torch.Tensor, p: torch.Tensor | float) -> torch.Tensor:
    """A (N, 1, 1, 1) mask: 1 for the images a transform applies to (each with probability p)."""
    return (torch.rand(x.shape[0], 1, 1, 1, device=x.device) < p).to(x.dtype)


def _where(mask: torch.Tensor, new: torch.Tensor, old: torch.Tensor) -> torch.Tensor:
    return mask * new + (1 - mask) * old


# ---------------------------------------------------------------- DiffAugment


def color(x: torch.Tensor, p: torch.Tensor | float = 1.0) -> torch.Tensor:
    """Brightness (+-0.5), saturation (x0-2 around each pixel's channel mean), contrast (x0.5-1.5 around the
    image mean); images in [-1, 1] as Zhao et al.'s code treats them."""
    n = x.shape[0]
    out = x + (torch.rand(n, 1, 1, 1, device=x.device, dtype=x.dtype) - 0.5)
    mean = out.mean(dim=1, keepdim=True)
    out = (out - mean) * (torch.rand(n, 1, 1, 1, device=x.device, dtype=x.dtype) * 2) + mean
    mean = out.mean(dim=(1, 2, 3), keepdim=True)
    out = (out - mean) * (torch.rand(n, 1, 1, 1, device=x.device, dtype=x.dtype) + 0.5) + mean
    return _where(_chance(x, p), out, x)


def translation(x: torch.Tensor, p: torch.Tensor | float = 1.0, ratio: float = 0.125) -> torch.Tensor:
    """Shift each image by up to ``ratio`` of its size in each direction, filling with zeros."""
    n, _, h, w = x.shape
    sy, sx = int(h * ratio + 0.5), int(w * ratio + 0.5)
    dy = torch.randint(-sy, sy + 1, (n, 1, 1), device=x.device)
    dx = torch.randint(-sx, sx + 1, (n, 1, 1), device=x.device)
    rows = (torch.arange(h, device=x.device).view(1, h, 1) - dy).expand(n, h, w)
    cols = (torch.arange(w, device=x.device).view(1, 1, w) - dx).expand(n, h, w)
    inside = ((rows >= 0) & (rows < h) & (cols >= 0) & (cols < w)).unsqueeze(1).to(x.dtype)
    index = (rows.clamp(0, h - 1) * w + cols.clamp(0, w - 1)).view(n, 1, h * w).expand(-1, x.shape[1], -1)
    out = x.reshape(n, x.shape[1], h * w).gather(2, index).view_as(x) * inside
    return _where(_chance(x, p), out, x)


def cutout(x: torch.Tensor, p: torch.Tensor | float = 1.0, ratio: float = 0.5) -> torch.Tensor:
    """Zero a square of ``ratio`` of the side at a random place of each image."""
    n, _, h, w = x.shape
    ch, cw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    cy = torch.randint(0, h + (1 - ch % 2), (n, 1, 1), device=x.device)
    cx = torch.randint(0, w + (1 - cw % 2), (n, 1, 1), device=x.device)
    rows = torch.arange(h, device=x.device).view(1, h, 1) - cy + ch // 2
    cols = torch.arange(w, device=x.device).view(1, 1, w) - cx + cw // 2
    hole = ((rows >= 0) & (rows < ch) & (cols >= 0) & (cols < cw)).unsqueeze(1).to(x.dtype)
    return _where(_chance(x, p), x * (1 - hole), x)


DIFFAUGMENT = {"color": color, "translation": translation, "cutout": cutout}


# ---------------------------------------------------------------- ADA


def _rotation(theta: torch.Tensor) -> torch.Tensor:
    c, s, z, o = torch.cos(theta), torch.sin(theta), torch.zeros_like(theta), torch.ones_like(theta)
    return torch.stack([torch.stack([c, -s, z], -1), torch.stack([s, c, z], -1), torch.stack([z, z, o], -1)], -2)


def _scale(sx: torch.Tensor, sy: torch.Tensor) -> torch.Tensor:
    z, o = torch.zeros_like(sx), torch.ones_like(sx)
    return torch.stack([torch.stack([sx, z, z], -1), torch.stack([z, sy, z], -1), torch.stack([z, z, o], -1)], -2)


def _shift(tx: torch.Tensor, ty: torch.Tensor) -> torch.Tensor:
    z, o = torch.zeros_like(tx), torch.ones_like(tx)
    return torch.stack([torch.stack([o, z, tx], -1), torch.stack([z, o, ty], -1), torch.stack([z, z, o], -1)], -2)


GEOMETRIC = ("xflip", "rotate90", "xint", "scale", "rotate", "aniso", "xfrac")
COLOUR = ("brightness", "contrast", "lumaflip", "hue", "saturation")


def _chances(x: torch.Tensor, p: torch.Tensor | float, transforms: Collection[str]) -> Callable[[str], torch.Tensor]:
    """``chance(name)``: 1 per image where transform ``name`` applies (probability p), 0 elsewhere and for a
    transform not in ``transforms`` (the random draws are the same either way: a pipeline of fewer transforms
    moves the images the full one would move by those transforms alone)."""

    def chance(name: str) -> torch.Tensor:
        drawn = _chance(x, p)
        return drawn if name in transforms else torch.zeros_like(drawn)

    return chance


def geometric(x: torch.Tensor, p: torch.Tensor | float, transforms: Collection[str] = GEOMETRIC) -> torch.Tensor:
    """ADA's geometric ``transforms`` (all of ``GEOMETRIC``: its "bg" pipeline; "blit" is the first three), each
    with probability p, composed
    into one affine map per image and applied by one bilinear resampling (reflection at the borders)."""
    n, dev, dt = x.shape[0], x.device, x.dtype
    eye = torch.eye(3, device=dev, dtype=dt).expand(n, 3, 3)
    moved = torch.zeros(n, 1, 1, 1, device=dev, dtype=dt)  # 1 where any transform applies
    chance = _chances(x, p, transforms)

    def maybe(name: str, matrix: torch.Tensor) -> torch.Tensor:
        nonlocal moved
        chosen = chance(name)
        moved = torch.maximum(moved, chosen)
        return torch.where(chosen.view(n, 1, 1) > 0, matrix, eye)

    one = torch.ones(n, device=dev, dtype=dt)
    flip = 1 - 2 * torch.randint(0, 2, (n,), device=dev).to(dt)
    m = maybe("xflip", _scale(flip, one))
    m = m @ maybe("rotate90", _rotation(torch.randint(0, 4, (n,), device=dev).to(dt) * (math.pi / 2)))
    t = (torch.rand(n, 2, device=dev, dtype=dt) * 2 - 1) * 0.125 * 2  # integer translation, grid units of [-1, 1]
    size = x.shape[-1]
    t = torch.round(t * size / 2) / (size / 2)
    m = m @ maybe("xint", _shift(t[:, 0], t[:, 1]))
    s = torch.exp2(torch.randn(n, device=dev, dtype=dt) * 0.2)  # isotropic scaling (lognormal, std 0.2 octaves)
    m = m @ maybe("scale", _scale(s, s))
    m = m @ maybe("rotate", _rotation((torch.rand(n, device=dev, dtype=dt) * 2 - 1) * math.pi))  # any angle
    a = torch.exp2(torch.randn(n, device=dev, dtype=dt) * 0.2)  # anisotropic scaling
    m = m @ maybe("aniso", _scale(a, 1 / a))
    f = torch.randn(n, 2, device=dev, dtype=dt) * 0.125 * 2  # fractional translation (std 1/8 of the image)
    m = m @ maybe("xfrac", _shift(f[:, 0], f[:, 1]))
    grid = F.affine_grid(m[:, :2, :], list(x.shape), align_corners=False)
    sampled = F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
    return _where(moved, sampled, x)  # untouched images exactly as they were (resampling would round them)


def colour(x: torch.Tensor, p: torch.Tensor | float, transforms: Collection[str] = COLOUR) -> torch.Tensor:
    """ADA's colour ``transforms`` (all of ``COLOUR``: its "c" pipeline), each with probability p: brightness,
    contrast, luma flip, hue rotation, saturation (RGB images in [-1, 1])."""
    n, dev, dt = x.shape[0], x.device, x.dtype
    chance = _chances(x, p, transforms)
    # As ADA's pipeline, on images in [-1, 1]: brightness adds N(0, 0.2); contrast scales about 0 (mid-grey)
    # by 2^N(0, 0.5). The constants are made on the device (no copy from the host, which would wait on it).
    x = x + chance("brightness") * torch.randn(n, 1, 1, 1, device=dev, dtype=dt) * 0.2
    contrast = torch.exp2(torch.randn(n, 1, 1, 1, device=dev, dtype=dt) * 0.5)
    x = _where(chance("contrast"), x * contrast, x)
    r = 1 / math.sqrt(3)
    luma = torch.full((3,), r, device=dev, dtype=dt)  # the luma axis (ADA's, in RGB)
    along = (x * luma.view(1, 3, 1, 1)).sum(1, keepdim=True) * luma.view(1, 3, 1, 1)
    x = _where(chance("lumaflip") * torch.randint(0, 2, (n, 1, 1, 1), device=dev).to(dt), x - 2 * along, x)
    theta = (torch.rand(n, device=dev, dtype=dt) * 2 - 1) * math.pi  # hue: rotation about the luma axis
    shift = torch.eye(3, device=dev, dtype=dt).roll(1, 1)  # shift[i, i + 1] = 1
    cross = (shift.T - shift) * r  # k x . for k = luma: [[0, -r, r], [r, 0, -r], [-r, r, 0]]
    outer = torch.outer(luma, luma)
    c, s = torch.cos(theta).view(n, 1, 1), torch.sin(theta).view(n, 1, 1)
    rot = c * torch.eye(3, device=dev, dtype=dt) + s * cross + (1 - c) * outer
    hued = torch.einsum("nij,njhw->nihw", rot, x)
    x = _where(chance("hue"), hued, x)
    along = (x * luma.view(1, 3, 1, 1)).sum(1, keepdim=True) * luma.view(1, 3, 1, 1)
    saturation = torch.exp2(torch.randn(n, 1, 1, 1, device=dev, dtype=dt) * 1.0)
    return _where(chance("saturation"), along + (x - along) * saturation, x)


# ---------------------------------------------------------------- what the updates call


class Augment:
    """What D sees: ``aug(images)``; under ``ada`` also the heuristic (``observe`` the D outputs on real
    images, ``adjust`` every ``interval`` D updates). ``p`` is a tensor on the training device."""

    def __init__(
        self,
        name: str,
        device: torch.device,
        p: float,
        policy: list[str] | None = None,
        adaptive: bool = False,
        target: float = 0.6,
        interval: int = 4,
        speed_kimg: float = ADA_SPEED_KIMG,
    ) -> None:
        if name not in ("diffaugment", "ada"):
            raise ValueError(f"no augmentation '{name}': diffaugment or ada (augment=none builds no Augment)")
        self.name, self.policy, self.adaptive = name, list(policy or AUGMENT_POLICIES), adaptive and name == "ada"
        self.target, self.interval, self.speed_kimg = target, interval, speed_kimg
        self.p = torch.tensor(float(p), device=device)
        self.signs = torch.zeros(2, device=device)  # sum of sign(D(real)), number of outputs since the last adjustment
        self.rt = torch.tensor(0.0, device=device)  # the last adjustment's r_t
        self.updates = 0  # D updates since the last adjustment (the same on every rank)
        self.images = 0  # real images (all ranks) since the last adjustment

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` as D sees it, in ``x``'s dtype. The transforms compute in fp32 whatever the networks'
        precision (under speed.precision=bf16 autocast would otherwise run ADA's colour matrices in bf16)."""
        with torch.autocast(x.device.type, enabled=False):
            y = x.float()
            if self.name == "diffaugment":
                for name in self.policy:
                    y = DIFFAUGMENT[name](y, self.p)
            else:
                y = colour(geometric(y, self.p), self.p)
        return y.to(x.dtype)

    def observe(self, out_real: torch.Tensor, images: int) -> None:
        """One D update's outputs on real images (``images``: the global batch); every ``interval`` updates,
        r_t is measured (under ada, adaptive or not: ``augment=ada augment.adaptive=false augment.p=0`` logs
        the r_t of a run without augmentation) and, when adaptive, p adjusted."""
        if self.name != "ada":
            return
        # No in-place update: a snapshot or checkpoint may hold these very tensors. A non-finite output (a
        # step that on_nonfinite=skip drops) counts as 0, so that r_t and p stay finite. No host copy.
        total = torch.sign(out_real.detach().float()).nan_to_num(0.0).sum()
        self.signs = self.signs + torch.stack([total, torch.full_like(total, out_real.numel())])
        self.updates, self.images = self.updates + 1, self.images + images
        if self.updates >= self.interval:
            self.adjust()

    def adjust(self) -> None:
        signs = distributed.sum_over_ranks(self.signs)
        self.rt = signs[0] / signs[1].clamp(min=1)
        if self.adaptive:
            step = self.images / (self.speed_kimg * 1000)
            self.p = (self.p + torch.sign(self.rt - self.target) * step).clamp(0.0, 1.0)
        self.signs = torch.zeros_like(self.signs)
        self.updates = self.images = 0

    def scalars(self) -> dict[str, torch.Tensor]:
        """What the loop logs (tensors: read at logging steps only)."""
        if self.name == "none":
            return {}
        out = {"augment/p": self.p}
        return out | (
            {"augment/rt": self.rt, "augment/target": self.p.new_tensor(self.target)} if self.name == "ada" else {}
        )

    def state_dict(self, device: torch.device | str = "cpu") -> dict[str, Any]:
        """Copies (never the live tensors) on ``device``: the CPU for a checkpoint; the training device for a
        step's snapshot, which then needs no copy to the host."""
        return {"p": self.p.to(device, copy=True), "signs": self.signs.to(device, copy=True),
                "rt": self.rt.to(device, copy=True), "updates": self.updates, "images": self.images}  # fmt: skip

    def load_state_dict(self, state: dict[str, Any]) -> None:
        dev = self.p.device  # copies: a snapshot can be put back more than once
        self.p, self.signs, self.rt = (state[k].to(dev, copy=True) for k in ("p", "signs", "rt"))
        self.updates, self.images = int(state["updates"]), int(state["images"])
