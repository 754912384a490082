"""Generators outside training: load one from a checkpoint or an export, and export one.

    from sngan import load_generator
    g = load_generator("outputs/run/checkpoints/best.pt")     # EMA weights where the run kept them
    images = g(torch.randn(16, g.z_dim))                      # [-1, 1], eval mode
    images = g(torch.randn(16, g.z_dim), torch.full((16,), 3))  # class 3 of a conditional G
                                                              # (g.num_classes > 0, names in g.classes)

An export is a generator-only ``.safetensors`` file (weights and BatchNorm
statistics; no code, no pickle) plus a ``.json`` beside it holding what is
needed to rebuild the module: model name, z_dim, width, resolution, and the class names of a
class-conditional generator.
"""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path
from typing import Any

import torch
from torch import nn

from sngan.config import ConfigError
from sngan.models import MODELS, build_models
from sngan.models.sampling import label_cdf, sample_y
from sngan.utils import checkpoint as ckpt
from sngan.utils.outputs import named
from sngan.utils.plugins import import_modules

EXPORT_FORMAT = "sngan-generator/1"
EVAL_SEED_OFFSET = 12345  # evaluations draw z from seed + this, in training and in python -m sngan.evaluate


@torch.no_grad()
def generate(generator: nn.Module, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
    """Images from G (of classes ``y`` when conditional) in eval mode (BatchNorm running statistics),
    its mode restored afterwards."""
    was_training = generator.training
    generator.eval()
    try:
        return generator(z) if y is None else generator(z, y)
    finally:
        generator.train(was_training)


class SeededSampler:
    """``sample_fn(n)`` drawing from ``generator`` (eval mode, no gradients) with its own RNG seeded with
    ``seed``: the same weights and seed always give the same images, however they are batched (the noise
    is drawn in fixed blocks of ``BLOCK``). A conditional generator draws classes from the same RNG, each
    as often as in ``class_counts`` (the training set's images per class; default: the generator's
    ``class_counts``, uniform where unknown), or always ``label`` when one is given. ``skip(n)`` draws the
    noise of n images without generating them, so that a rank generating a later share of a sample set
    gets the images a single process would have generated there."""

    BLOCK = 50

    def __init__(
        self,
        generator: nn.Module,
        device: torch.device,
        seed: int,
        label: int | None = None,
        class_counts: list[int] | None = None,
    ) -> None:
        self.generator, self.device, self.label = generator, device, label
        self.num_classes = getattr(generator, "num_classes", 0)
        counts = class_counts if class_counts is not None else getattr(generator, "class_counts", None)
        self.cdf = label_cdf(counts, device) if self.num_classes else None
        self.rng = torch.Generator(device=device).manual_seed(seed)
        self.z = torch.empty(0, generator.z_dim, device=device)  # drawn, not yet used
        self.y = torch.empty(0, dtype=torch.long, device=device) if self.num_classes else None

    def _noise(self, n: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        zs, ys = [self.z], [self.y]
        for _ in range(-(-(n - len(self.z)) // self.BLOCK)):  # whole blocks until n are drawn
            zs.append(torch.randn(self.BLOCK, self.generator.z_dim, device=self.device, generator=self.rng))
            ys.append(sample_y(self.BLOCK, self.num_classes, self.device, self.cdf, self.rng))
        z = torch.cat(zs)
        y = torch.cat(ys) if self.y is not None else None
        self.z, z = z[n:].clone(), z[:n]
        if y is not None:
            self.y, y = y[n:].clone(), y[:n]
        return z, y if y is None or self.label is None else torch.full_like(y, self.label)

    def __call__(self, n: int) -> torch.Tensor:
        return generate(self.generator, *self._noise(n))

    def skip(self, n: int) -> None:
        self._noise(n)


def _pick_ema(state: dict[str, Any], ema: str | bool | None, path: Path) -> bool:
    has_ema = state.get("ema") is not None
    if ema in (None, "auto"):
        return has_ema
    want = ema if isinstance(ema, bool) else str(ema).lower() == "true"
    if want and not has_ema:
        raise ckpt.CheckpointError(
            f"Checkpoint '{path}' holds no EMA generator (the run had train.ema_decay=null); use ema=auto or false."
        )
    return want


def _build(
    model: dict[str, Any], path: Path, classes: list[str] | None = None, class_counts: list[int] | None = None
) -> nn.Module:
    """The generator ``model`` describes, with its class names and (where recorded: checkpoints from
    before they were are sampled uniformly) its training images per class as attributes."""
    name = model.get("name")
    if name not in MODELS.names():
        raise ckpt.CheckpointError(
            f"'{path}' describes model {name!r}, which this sngan does not know (known: "
            f"{', '.join(MODELS.names())}). Use the sngan release that wrote it, or, for a model of your own, "
            f"make the module that registers it importable (the run's imports= names it)."
        )
    if model.get("conditional") and not classes:
        raise ckpt.CheckpointError(f"'{path}' describes a class-conditional generator but lists no classes.")
    num_classes = len(classes) if model.get("conditional") and classes else 0
    generator, _ = build_models(name, int(model["z_dim"]), float(model["width"]), False, num_classes)
    generator.classes = list(classes) if num_classes and classes else None
    generator.class_counts = _counts(class_counts, num_classes, path) if num_classes else None
    return generator


def _counts(counts: Any, num_classes: int, path: Path) -> list[int] | None:
    if counts is None:
        return None
    if (
        not isinstance(counts, list | tuple)
        or len(counts) != num_classes
        or not all(type(c) is int and c >= 0 for c in counts)
        or not sum(counts)
    ):
        raise ckpt.CheckpointError(
            f"'{path}' gives the training images per class as {counts!r}, which is not a count for each of its "
            f"{num_classes} classes. The file is damaged or was edited."
        )
    return list(counts)


def _load_weights(generator: nn.Module, weights: dict[str, torch.Tensor], path: Path) -> None:
    try:
        generator.load_state_dict(weights)
    except RuntimeError as exc:
        raise ckpt.CheckpointError(
            f"The generator weights in '{path}' do not fit the architecture it names "
            f"({str(exc).strip().splitlines()[0]}). The file is damaged or was edited."
        ) from exc


def generator_from_state(
    state: dict[str, Any], path: Path, ema: str | bool | None = "auto"
) -> tuple[nn.Module, dict[str, Any]]:
    """(generator in eval mode on the CPU, facts about it) from a loaded training checkpoint."""
    use_ema = _pick_ema(state, ema, path)
    config = state.get("config") or {}
    import_modules(config.get("imports"))  # the run's own registrations (a model of its own)
    generator = _build(config.get("model", {}), path, state.get("classes"), state.get("class_counts"))
    _load_weights(generator, state["ema" if use_ema else "generator"], path)
    info = {
        "model": config["model"]["name"],
        "z_dim": generator.z_dim,
        "width": config["model"]["width"],
        "conditional": bool(getattr(generator, "num_classes", 0)),
        "classes": generator.classes,
        "class_counts": generator.class_counts,
        "resolution": MODELS.get(config["model"]["name"]).resolution,
        "ema": use_ema,
        "step": int(state["step"]),
        "source": str(Path(path).resolve()),
    } | ({"imports": list(config["imports"])} if config.get("imports") else {})
    return generator.eval(), info


def generator_from_checkpoint(path: Path, ema: str | bool | None = "auto") -> tuple[nn.Module, dict[str, Any]]:
    """(generator in eval mode on the CPU, facts about it) from a training checkpoint file."""
    return generator_from_state(ckpt.load(Path(path)), Path(path), ema)


def load_generator(path: str | Path, ema: str | bool | None = "auto", device: str = "cpu") -> nn.Module:
    """A ready generator (eval mode, on ``device``) from a checkpoint or an exported ``.safetensors``.

    ``ema``: "auto" takes the EMA weights where the checkpoint has them; True/False choose.
    The module's ``z_dim`` attribute gives the latent size; outputs lie in [-1, 1].
    """
    path = Path(path)
    if ckpt.is_export(path):  # by name, or by content where an export was renamed
        from safetensors import safe_open
        from safetensors.torch import load_file

        meta_path = path.with_suffix(".json")
        try:
            meta = json.loads(meta_path.read_text())
        except (OSError, ValueError) as exc:
            raise ckpt.CheckpointError(
                f"'{meta_path}' (the description that goes with '{path}') cannot be read ({exc}). Keep the "
                f".json beside the .safetensors, as python -m sngan.export writes them."
            ) from exc
        if not path.is_file():
            raise ckpt.CheckpointError(f"Exported generator '{path}' does not exist.")
        model = {key: meta.get(key) for key in ("z_dim", "width", "conditional")} | {"name": meta.get("model")}
        import_modules(meta.get("imports"))  # an export of a model of one's own
        generator = _build(model, path, meta.get("classes"), meta.get("class_counts"))
        try:
            weights = load_file(str(path))
            stamp = safe_open(str(path), "pt").metadata().get("export_id")
        except Exception as exc:  # SafetensorError: truncated or not a safetensors file
            raise ckpt.CheckpointError(f"'{path}' is not a readable safetensors file ({exc}).") from exc
        if stamp != meta.get("export_id"):  # exports before the stamp carry it in neither file
            raise ckpt.CheckpointError(
                f"'{meta_path}' describes another export than '{path}' (their export ids differ: one file was "
                f"replaced without the other, e.g. an export stopped between its two writes). Export the "
                f"checkpoint again: python -m sngan.export ckpt=<checkpoint> out={path} overwrite=true."
            )
        _load_weights(generator, weights, path)
    else:
        generator, _ = generator_from_checkpoint(path, ema)
    return generator.eval().requires_grad_(False).to(device)


def export_paths(path: Path, out: Path | None = None) -> tuple[Path, Path]:
    """Where ``export_generator`` writes: ``out`` (.safetensors added where it lacks it; default
    <checkpoint>.generator.safetensors) and the .json of the same name beside it."""
    out = Path(out) if out is not None else Path(path).with_suffix(".generator.safetensors")
    if out.suffix != ".safetensors":
        out = out.with_name(out.name + ".safetensors")
    return out, out.with_suffix(".json")


def refuse_existing(weights: Path, meta: Path) -> None:
    """An export replaces two files, and the .json may be a user's own (``out=notes`` beside notes.json):
    refused where either exists, before anything is read or written."""
    taken = [p for p in (weights, meta) if p.exists()]
    if taken:
        listed = " and ".join(f"'{p}'" for p in taken)
        raise ConfigError(
            f"Invalid configuration: out={weights} would replace {listed}, which already "
            f"{'exist' if len(taken) > 1 else 'exists'} (an export writes the .safetensors file and the .json "
            f"of the same name beside it). Choose another out=, or add overwrite=true to replace them; "
            f"nothing was written."
        )


def _write_atomic(files: dict[Path, bytes]) -> None:
    """Write each file via a temporary file, fsync and rename, so a crash or a full disk leaves old files
    whole and never a torn export; the temporary files are removed on failure. A failed write raises
    OSError naming the file it was writing (a full disk's EFBIG names none)."""
    temps = {path: path.with_name(f".{path.name}.tmp") for path in files}
    try:
        for path, data in files.items():
            with open(temps[path], "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
        for path, tmp in temps.items():
            os.replace(tmp, path)
    except OSError as exc:
        raise named(exc, path) from exc
    finally:
        for tmp in temps.values():
            tmp.unlink(missing_ok=True)


def export_generator(
    path: Path, out: Path | None = None, ema: str | bool | None = "auto", overwrite: bool = False
) -> tuple[Path, Path]:
    """Write the generator of checkpoint ``path`` as ``out`` (.safetensors) and its .json; return both paths.
    Existing files there are refused (``CheckpointError``) unless ``overwrite``."""
    from safetensors.torch import save

    out, meta = export_paths(path, out)
    if not overwrite:
        refuse_existing(out, meta)
    generator, info = generator_from_checkpoint(path, ema)
    out.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.contiguous() for k, v in generator.state_dict().items()}
    stamp = uuid.uuid4().hex  # in both files: a pair torn by a crash between the two renames is refused
    doc = json.dumps({"format": EXPORT_FORMAT, "export_id": stamp, **info}, indent=2) + "\n"
    _write_atomic({out: save(tensors, metadata={"format": EXPORT_FORMAT, "export_id": stamp}), meta: doc.encode()})
    return out, meta
