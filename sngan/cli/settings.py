"""The training settings checked: against the schema and the registries (``check_train``), a checkpoint's
stored ones (``check_stored``), and at start-up against what the launch and the data give (``check_world``,
``check_data_size``, ``class_names``). Each raises a ``ConfigError`` that says what to do. The other commands'
settings: command_settings.py."""

from __future__ import annotations

from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from sngan.cli.validation import validate, validate_constraint
from sngan.config import ConfigError, TrainConfig, invalid
from sngan.data import DATASETS, ImageData
from sngan.models import CONSTRAINTS, MODELS
from sngan.training.losses import LOSSES
from sngan.training.resume import stored_constraint
from sngan.utils.distributed import Dist
from sngan.utils.plugins import import_modules


def check_train(raw: DictConfig) -> TrainConfig:
    """Validate a composed training config against the schema and the registries (after importing the modules
    of ``imports``, whose registrations it may name)."""
    import_modules(OmegaConf.select(raw, "imports", default=None) or [])
    models = {name: MODELS.get(name).resolution for name in MODELS.names()}
    datasets = {name: DATASETS.get(name).resolution for name in DATASETS}
    cfg = validate(raw, models, LOSSES.names(), datasets)
    if cfg.model.conditional and not MODELS.get(cfg.model.name).conditional:
        choices = ", ".join(n for n in MODELS.names() if MODELS.get(n).conditional)
        raise ConfigError(
            f"Invalid configuration: model.conditional=true, but model '{cfg.model.name}' has no "
            f"class-conditional version. Choose one that has ({choices}), or set model.conditional=false."
        )
    check_constraint(cfg)
    return cfg


def check_constraint(cfg: TrainConfig) -> None:
    """The constraint exists, its constants are set where it uses them, it agrees with model.spectral_norm,
    and the paper defines it with this loss and this D."""
    c = cfg.constraint
    if c.name not in CONSTRAINTS:
        raise invalid("constraint.name", c.name, f"choose one of: {', '.join(CONSTRAINTS.names())}")
    rule = CONSTRAINTS.get(c.name)
    validate_constraint(c, {name: CONSTRAINTS.get(name).constants for name in CONSTRAINTS.names()})
    with_sn = ", ".join(n for n in CONSTRAINTS.names() if CONSTRAINTS.get(n).spectral_norm)
    if c.spectral_norm != rule.spectral_norm:
        raise ConfigError(
            f"Invalid configuration: constraint.spectral_norm={str(c.spectral_norm).lower()} contradicts "
            f"constraint={c.name}, which {'attaches' if rule.spectral_norm else 'has no'} spectral normalization: "
            f"the key is fixed by the name. Choose the constraint instead (with spectral normalization: {with_sn})."
        )
    if cfg.model.spectral_norm != rule.spectral_norm:
        raise ConfigError(
            f"Invalid configuration: model.spectral_norm={str(cfg.model.spectral_norm).lower()} contradicts "
            f"constraint={c.name}. model.spectral_norm is kept for old checkpoints and follows the constraint "
            f"group: for the unnormalized D use constraint=none, for spectral normalization one of {with_sn} "
            f"(constraint=sn: the paper's), and leave model.spectral_norm out."
        )
    if rule.losses is not None and cfg.loss.name not in rule.losses:
        raise ConfigError(
            f"Invalid configuration: constraint={c.name} with loss={cfg.loss.name} is no baseline the paper "
            f"defines: {rule.pairing}. Use loss={' or loss='.join(rule.losses)} with it, or another constraint."
        )
    if cfg.model.conditional and not rule.conditional:
        allowed = " or ".join(f"constraint={n}" for n in CONSTRAINTS.names() if CONSTRAINTS.get(n).conditional)
        raise ConfigError(
            f"Invalid configuration: constraint={c.name} with model.conditional=true is not defined: the paper's "
            f"baselines are unconditional discriminators (section 4.1), and the class-conditional projection D "
            f"(Miyato & Koyama) is defined with spectral normalization; a gradient penalty would also need a "
            f"class for interpolates of images of two classes. Use {allowed} with the conditional model, or train "
            f"unconditionally (model.conditional=false)."
        )


def check_stored(config: dict[str, Any], provenance: dict[str, Any] | None = None) -> TrainConfig:
    """A checkpoint's stored training config, validated. Keys it predates (older versions wrote fewer, and
    none that a source does not read) take the values of today's config files for its model, dataset and
    loss. A model, dataset or loss this version does not have is refused, naming the version that wrote
    the checkpoint (``provenance``: the checkpoint's record of it)."""
    import_modules(config.get("imports"))  # the run's own registrations, before its names are checked
    known = {"model": MODELS.names(), "dataset": list(DATASETS), "loss": LOSSES.names()}
    known["constraint"] = CONSTRAINTS.names()
    for group, names in known.items():
        name = config.get(group, {}).get("name")
        if name is not None and name not in names:
            wrote = provenance or {}
            by = f"sngan {wrote.get('sngan_version', '(version not recorded)')}" + (
                f" at commit {wrote['git_commit']}" if wrote.get("git_commit") else ""
            )
            raise ConfigError(
                f"The checkpoint was trained with {group}={name}, which this version of sngan does not have "
                f"(it has: {', '.join(sorted(names))}). It was written by {by}: install that version to "
                "evaluate or sample it."
            )
    choices = [f"{group}={config[group]['name']}" for group in ("model", "dataset", "loss") if group in config]
    choices.append(f"constraint={stored_constraint(config)}")  # from before the group: model.spectral_norm's
    base = _compose("train", choices)
    OmegaConf.set_struct(base, False)  # a key since removed is the schema's to refuse, by name
    return check_train(OmegaConf.merge(base, OmegaConf.create(config)))


def _compose(config_name: str, overrides: list[str]) -> DictConfig:
    from hydra import compose, initialize_config_module
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig

    if GlobalHydra.instance().is_initialized():  # inside a command: its search path is sngan.configs, plus
        if HydraConfig.initialized() and HydraConfig.get().searchpath:  # the folders its hydra.searchpath adds
            overrides = [*overrides, f"hydra.searchpath=[{','.join(HydraConfig.get().searchpath)}]"]
        return compose(config_name=config_name, overrides=overrides)
    with initialize_config_module(config_module="sngan.configs", version_base="1.3"):
        return compose(config_name=config_name, overrides=overrides)


def class_names(cfg: TrainConfig, data: ImageData) -> list[str] | None:
    """The classes a conditional run learns (None for an unconditional run)."""
    if not cfg.model.conditional:
        return None
    if data.labels is None or not data.classes:
        hint = DATASETS.get(cfg.dataset.name).labels_hint.format(root=cfg.dataset.root)
        raise ConfigError(
            f"model.conditional=true needs class labels, but dataset '{cfg.dataset.name}' (split "
            f"'{cfg.dataset.split}') has none here: {hint}, or train unconditionally (model.conditional=false)."
        )
    return list(data.classes)


def check_world(cfg: TrainConfig, here: Dist, device: torch.device) -> None:
    """What this launch needs beyond a valid config: batches G's BatchNorm trains on in every process, split
    evenly over the processes of a torchrun launch, and SyncBatchNorm only where torch runs it."""
    smallest = MODELS.get(cfg.model.name).min_batch
    for key in ("batch_size_d", "batch_size_g"):  # G makes batch_size_d fakes in each D update
        value = getattr(cfg.train, key)
        if here.enabled and (value % here.world or value // here.world < smallest):
            raise ConfigError(
                f"Invalid configuration: train.{key}={value} is the global batch and must split evenly over "
                f"the {here.world} processes of this torchrun launch, at least {smallest} per process (model "
                f"'{cfg.model.name}': {_why_min_batch(smallest)}). Use a multiple of {here.world} of at least "
                f"{smallest * here.world}, or another --nproc-per-node / --nnodes."
            )
        if value < smallest:
            raise ConfigError(
                f"Invalid configuration: train.{key}={value} is too small for model '{cfg.model.name}': "
                f"{_why_min_batch(smallest)}. Use train.{key}={smallest} or more, or a model that trains on "
                f"{value} ({', '.join(n for n in MODELS.names() if MODELS.get(n).min_batch <= value)})."
            )
    if not here.enabled:
        return
    if cfg.train.sync_bn and device.type != "cuda":
        raise ConfigError(
            f"Invalid configuration: train.sync_bn=true, but torch's SyncBatchNorm runs only on CUDA devices "
            f"and this launch trains on {device.type}. Set train.sync_bn=false (each rank's BatchNorm uses its "
            f"own share of the batch) or launch on GPUs."
        )


def _why_min_batch(smallest: int) -> str:
    return (
        f"its generator's first BatchNorm normalizes each feature over the images of the batch, and torch "
        f"refuses to train one on fewer than {smallest}"
    )


def check_data_size(cfg: TrainConfig, images: int) -> None:
    """A batch of real images larger than the dataset would repeat images in one batch, and a huge one (a
    typo) would allocate terabytes after a minute of drawing indices. Under torchrun every rank draws the
    same global batch from all the images and keeps its share: the limit holds for the global batch."""
    value = cfg.train.batch_size_d
    if value > images:
        more = DATASETS.get(cfg.dataset.name).more_images
        more = f", or {more}" if more else ""
        raise ConfigError(
            f"Invalid configuration: train.batch_size_d={value} is larger than the dataset, which holds {images} "
            f"images ('{cfg.dataset.name}', split '{cfg.dataset.split}'), and a batch of real images cannot hold "
            f"more images than that. Use train.batch_size_d={images} or less (the paper uses 64){more}."
        )
