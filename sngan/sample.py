"""``python -m sngan.sample``: PNGs, a grid or latent interpolations from a generator.

python -m sngan.sample ckpt=outputs/run/checkpoints/best.pt n=1000 out=samples
python -m sngan.sample ckpt=RUN/checkpoints/ckpt_00050000.pt n=64 grid=true
python -m sngan.sample ckpt=generator.safetensors n=8 interpolate=true frames=10
python -m sngan.sample ckpt=RUN/checkpoints/best.pt class=3 n=100      # conditional: one class
python -m sngan.sample ckpt=RUN/checkpoints/best.pt classes=all n=10   # a row of 10 per class
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import hydra
import torch
from omegaconf import DictConfig

from sngan.cli.command_settings import SampleConfig, check_sample
from sngan.cli.errors import ensure_folder, run_or_exit
from sngan.cli.hydra_checks import typos_named
from sngan.cli.provenance import resolve_device
from sngan.config import ConfigError
from sngan.data.images import save_png
from sngan.inference import generate, load_generator
from sngan.models.sampling import label_cdf, sample_y
from sngan.training.speed import keep_freed_memory
from sngan.training.stopping import report_stops_with
from sngan.utils.outputs import stamp, written_report


def slerp(a: torch.Tensor, b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Spherical interpolation between rows of ``a`` and ``b`` at fractions ``t`` -> [len(a), len(t), z]."""
    a_n, b_n = a / a.norm(dim=1, keepdim=True), b / b.norm(dim=1, keepdim=True)
    omega = torch.acos((a_n * b_n).sum(1).clamp(-1 + 1e-7, 1 - 1e-7))[:, None, None]
    t = t[None, :, None]
    so = torch.sin(omega)
    return (torch.sin((1 - t) * omega) / so) * a[:, None] + (torch.sin(t * omega) / so) * b[:, None]


def pick_label(generator: torch.nn.Module, label: str | None) -> int | None:
    """The class index that ``class=`` names (an index or a class name), checked against the generator."""
    k, names = getattr(generator, "num_classes", 0), getattr(generator, "classes", None) or []
    if label is None:
        return None
    if label in names:
        return names.index(label)
    if label.lstrip("-").isdigit() and 0 <= int(label) < k:
        return int(label)
    listed = ", ".join(f"{i}={name}" for i, name in enumerate(names))
    raise ConfigError(
        f"Invalid configuration: class={label} is not a class of this generator; it knows {k} classes: {listed}. "
        f"Give an index from 0 to {k - 1} or one of those names."
    )


def labels_for(generator: torch.nn.Module, cfg: SampleConfig, n: int, gen: torch.Generator) -> torch.Tensor | None:
    """The class of each of ``n`` images: None (unconditional G), one class (class=K), one row per class
    (classes=all) or drawn at random, each class as often as in the training set (uniformly for checkpoints
    that do not record it)."""
    k = getattr(generator, "num_classes", 0)
    if not k and (cfg.classes is not None or cfg.label is not None):
        asked = f"class={cfg.label}" if cfg.label is not None else f"classes={cfg.classes}"
        raise ConfigError(
            f"Invalid configuration: {asked}, but this generator is unconditional (it has no classes). "
            f"Drop class=/classes=, or sample from a run trained with model.conditional=true."
        )
    if not k:
        return None
    label = pick_label(generator, cfg.label)
    if cfg.classes == "all":
        return torch.arange(k).repeat_interleave(cfg.n)
    if label is not None:
        return torch.full((n,), label)
    return sample_y(n, k, torch.device("cpu"), label_cdf(getattr(generator, "class_counts", None)), gen)


@torch.no_grad()
def sample(cfg: SampleConfig) -> list[Path]:
    """Write the requested images; return the files written."""
    device = resolve_device(cfg.device)
    generator = load_generator(cfg.ckpt, cfg.ema, str(device))
    gen = torch.Generator().manual_seed(cfg.seed)
    count = cfg.n * (getattr(generator, "num_classes", 0) or 1) if cfg.classes == "all" else cfg.n
    y = labels_for(generator, cfg, cfg.n if cfg.interpolate else count, gen)
    out = ensure_folder(cfg.out)
    writing = False
    single = single_file(out, cfg)
    if single is not None:
        refuse_existing(single, cfg.overwrite)  # before the generator runs
        before = stamp([single])
        report_stops_with(lambda: written_report(before))
    else:
        if not cfg.overwrite:
            clear_numbered(out, False)  # refused before the generator runs
        report_stops_with(lambda: numbered_report(out, count) if writing else "nothing was written")
    if cfg.interpolate:
        a, b = torch.randn(2, cfg.n, generator.z_dim, generator=gen)
        z = slerp(a, b, torch.linspace(0, 1, cfg.frames)).reshape(-1, generator.z_dim)
        y = y.repeat_interleave(cfg.frames) if y is not None else None  # one class per row
    else:
        z = torch.randn(count, generator.z_dim, generator=gen)
    chunks = range(0, len(z), cfg.batch_size)
    images = torch.cat([generate(generator, z[i : i + cfg.batch_size].to(device),
                                 None if y is None else y[i : i + cfg.batch_size].to(device)).cpu()
                        for i in chunks])  # fmt: skip
    images = images.clamp(-1, 1).add(1).div(2)
    if single is not None:
        nrow = cfg.frames if cfg.interpolate else cfg.n if cfg.classes == "all" else max(1, round(len(images) ** 0.5))
        save_png(images, single, nrow=nrow)
        return [single]
    paths = [out / f"{i:06d}.png" for i in range(len(images))]
    clear_numbered(out, cfg.overwrite)
    writing = True  # from here a stop counts the numbered PNGs in out: none are an earlier call's
    for image, path in zip(images, paths):
        save_png(image, path)
    return paths


def single_file(out: Path, cfg: SampleConfig) -> Path | None:
    """The one image this call writes (interpolation.png, grid.png), or None: numbered PNGs."""
    if cfg.interpolate:
        return out / "interpolation.png"
    return out / "grid.png" if cfg.grid or cfg.classes == "all" else None


def refuse_existing(path: Path, overwrite: bool) -> None:
    """grid.png or interpolation.png of an earlier call (or a user's file of that name) is replaced only with
    overwrite=true; a folder of that name never."""
    if path.is_dir() or (path.exists() and not overwrite):
        held = "is a folder" if path.is_dir() else f"already exists ({path.stat().st_size:,} bytes)"
        fix = "Choose another out= folder" + ("" if path.is_dir() else ", or add overwrite=true to replace it")
        raise ConfigError(f"Invalid configuration: {path} {held}, and this command writes its image there. "
                          f"{fix}; nothing was written.")  # fmt: skip


def numbered(out: Path) -> list[Path]:
    """The PNGs in ``out`` named as ``sample`` names them (000000.png, ...), in order."""
    return sorted(p for p in out.glob("*.png") if re.fullmatch(r"\d{6,}\.png", p.name))


def numbered_report(out: Path, total: int) -> str:
    """What a stop leaves of the numbered PNGs (each written atomically: all whole)."""
    done = numbered(out)
    if not done:
        return f"nothing was written to {out}"
    if len(done) == total:
        return f"all {total:,} PNGs were written to {out}, each complete"
    return (
        f"{len(done):,} of {total:,} PNGs were written to {out} ({done[0].name}-{done[-1].name}), each complete; "
        f"the rest were not. Run the command again with overwrite=true for all {total:,}"
    )


def clear_numbered(out: Path, overwrite: bool) -> None:
    """Numbered PNGs of an earlier ``sample`` in ``out`` would mix with new ones (a FID over the folder
    would count both): refused, or with overwrite=true removed first (only files named as ``sample``
    names them)."""
    old = numbered(out)
    if old and not overwrite:
        raise ConfigError(
            f"Invalid configuration: out={out} already holds {len(old)} numbered samples ({old[0].name}, ...) "
            f"from an earlier sample command, which the new ones would mix with. Choose another out= folder, "
            f"or add overwrite=true to replace them."
        )
    for path in old:
        path.unlink()


@typos_named(SampleConfig)
@hydra.main(version_base="1.3", config_path="pkg://sngan.configs", config_name="sample")
def main(raw: DictConfig) -> None:
    keep_freed_memory()  # malloc keeps large freed blocks for reuse (sngan/training/speed.py)
    paths = run_or_exit(lambda: sample(check_sample(raw)))
    where = paths[0] if len(paths) == 1 else f"{len(paths)} PNGs in {paths[0].parent}"
    print(f"Wrote {where}.", file=sys.stderr)


if __name__ == "__main__":
    main()
