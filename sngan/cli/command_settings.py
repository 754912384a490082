"""The typed settings of evaluate, sample, fid_stats and export, each checked by its ``check_*`` (a plain
dataclass back, or a ``ConfigError``). Each command composes its own YAML (sngan/configs/<command>.yaml)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from sngan.cli.validation import validate_inception, validate_metrics, validate_protocol
from sngan.config import (
    ConfigError,
    DatasetConfig,
    InceptionConfig,
    MetricsConfig,
    invalid,
    metric_presets,
    preset_rule,
    to_schema,
)
from sngan.data import DATASETS, native_resolution
from sngan.utils.plugins import import_modules


@dataclass
class EvaluateConfig:
    ckpt: str | None  # a checkpoint file, or a run folder (every checkpoint in it)
    images: str | None  # or: a folder of images / a .npz of uint8 images, scored instead
    metrics: MetricsConfig
    inception: InceptionConfig
    data_root: str | None  # where the run's dataset lives on this host, if elsewhere
    out: str | None  # JSON path; default: beside the checkpoint
    seed: int | None  # None: the run's seed + 12345, as in training
    batch_size: int  # generated images per pass (memory only: SeededSampler's images do not depend on it)
    device: str
    intra_class: bool  # conditional checkpoints: also intra-class FID (n_fake / K images per class)
    overwrite: bool  # replace an existing out file; else only an evaluate table of the same rule is added to
    imports: list[str] = field(default_factory=list)  # modules to import first (their registrations)
    dataset: DatasetConfig | None = None  # images= only: whose reference statistics judge them (no key: None)
    also: list[str] = field(default_factory=list)  # more rules (metrics/ presets) on the same generated images

    def rules(self) -> list[MetricsConfig]:
        """The rule of ``metrics=``, then those of ``also=``, each scored into a table of its own."""
        return [self.metrics, *(preset_rule(name) for name in self.also)]


@dataclass
class SampleConfig:
    ckpt: str  # a checkpoint, or an exported .safetensors generator
    n: int
    out: str
    grid: bool  # one grid image instead of one PNG per sample
    interpolate: bool  # n rows of spherical interpolations between two latents
    frames: int  # images per interpolation row
    ema: str  # auto (the EMA generator where the checkpoint has one) | true | false
    seed: int
    batch_size: int
    device: str
    classes: str | None  # conditional G: "all" = a grid with one row of n images per class
    label: str | None  # conditional G: the `class=` option (an index or a class name)
    overwrite: bool  # replace the numbered PNGs, grid.png or interpolation.png an earlier call left in `out`


@dataclass
class FidStatsConfig:
    dataset: DatasetConfig
    split: str | None  # None: the dataset's training split (dataset.split)
    n: int | None  # None: every image of the split; else the first n in file order
    inception: InceptionConfig
    device: str
    imports: list[str] = field(default_factory=list)  # modules to import first (their registrations)
    network: str = "inception"  # the feature network: inception | dinov2 (a rule's metrics.network)
    resize: str = "legacy"  # legacy | clean (a rule's metrics.resize)


@dataclass
class ExportConfig:
    ckpt: str
    out: str | None  # default: <checkpoint>.generator.safetensors
    ema: str
    overwrite: bool  # replace an existing out file and the .json beside it (else refused)


def _check_ema(value: str) -> str:
    if value.lower() not in ("auto", "true", "false"):  # Hydra reads ema=true as a bool: "True"
        raise invalid("ema", value, "choose auto, true or false")
    return value.lower()


def check_evaluate(cfg: DictConfig) -> EvaluateConfig:
    import_modules(OmegaConf.select(cfg, "imports", default=None) or [])
    typed: EvaluateConfig = to_schema(cfg, EvaluateConfig)
    if typed.metrics.name == "none":
        raise ConfigError("Invalid configuration: metrics=none evaluates nothing; pick a rule such as "
                          "metrics=fid_paper, fid50k_train or fid10k_test.")  # fmt: skip
    check_what_to_score(typed)
    if typed.dataset is not None and typed.dataset.name not in DATASETS:
        raise invalid("dataset.name", typed.dataset.name, f"choose one of: {', '.join(DATASETS.names())}")
    # ckpt=: the split is checked against the run's dataset when the checkpoint is read (evaluate.run_dataset)
    check_also(typed)
    for rule in typed.rules():
        validate_metrics(rule, typed.inception, typed.dataset.name if typed.dataset is not None else None)
    if typed.dataset is not None:
        typed.dataset.resolution = typed.dataset.resolution or native_resolution(typed.dataset.name)
        if typed.dataset.resolution is None:
            raise ConfigError(
                f"Invalid configuration: dataset '{typed.dataset.name}' has no native resolution; set "
                f"dataset.resolution to the size its reals are read at (32 or 48): the images are brought to it too."
            )
    if typed.batch_size <= 0:
        raise invalid("batch_size", typed.batch_size, "it must be greater than 0")
    return typed


def check_also(cfg: EvaluateConfig) -> None:
    """``also=``: named rules (not ``none``), each once and not the main rule, without intra-class FID or out=
    (each rule's table goes where that rule's alone would)."""
    presets = sorted(metric_presets())
    own = [name for name in cfg.also if name.endswith(".yaml") and Path(name).is_file()]
    unknown = [name for name in cfg.also if name not in presets and name not in own]
    names = [cfg.metrics.name, *(preset_rule(name).name for name in cfg.also if name not in unknown)]
    if unknown or len(set(names)) < len(names):
        raise invalid("also", cfg.also, f"list other rules than metrics={cfg.metrics.name}, each once: presets "
                      f"({', '.join(presets)}) or rule files of your own (path/rule.yaml)")  # fmt: skip
    if cfg.also and (cfg.intra_class or cfg.out is not None or cfg.images is not None):
        raise ConfigError(
            "Invalid configuration: also= scores a checkpoint's generated images under several rules, each table "
            "where that rule's alone would go; it takes neither out=, intra_class=true nor images=. Score those "
            "with a command of their own for each rule."
        )


def check_what_to_score(cfg: EvaluateConfig) -> None:
    """ckpt= or images=, one of them; images= with a dataset or a statistics file to judge them by."""
    if (cfg.ckpt is None) == (cfg.images is None):
        raise ConfigError(
            "Invalid configuration: "
            + ("give ckpt= or images=, not both" if cfg.ckpt else "nothing to score")
            + ". Pass ckpt=PATH (a checkpoint, or a run folder: every checkpoint in it) or images=PATH (a folder "
            "of PNG/JPEG images, or a .npz of uint8 images) with the dataset they are judged against (dataset=cifar10)."
        )
    if cfg.ckpt is not None and cfg.dataset is not None:
        raise ConfigError(
            f"Invalid configuration: dataset={cfg.dataset.name} is for images=; a checkpoint is judged against the "
            f"dataset its run trained on. Drop dataset= (data_root= says where that dataset lives on this host)."
        )
    if cfg.images is not None and (cfg.data_root is not None or cfg.intra_class):
        option = "data_root=" if cfg.data_root is not None else "intra_class=true"
        raise ConfigError(
            f"Invalid configuration: {option} is for ckpt= (a checkpoint's run and its classes), not for images=. "
            f"Drop it; with images= the reals are dataset=NAME's (dataset.root=... says where they live)."
        )
    if cfg.images is not None and cfg.dataset is None and cfg.metrics.stats is None:
        raise ConfigError(
            f"Invalid configuration: images={cfg.images} needs real images to be judged against. Add dataset=NAME "
            f"(cifar10, cifar100, stl10, folder with dataset.root=...: its reference statistics under "
            f"metrics={cfg.metrics.name}, cached as in training), or metrics.stats=FILE (a statistics .npz)."
        )


def check_sample(cfg: DictConfig) -> SampleConfig:
    plain = OmegaConf.to_container(cfg, resolve=True)
    label = plain.pop("class", None)  # `class` cannot be a dataclass field name
    plain["label"] = None if label is None else str(label)
    typed: SampleConfig = to_schema(OmegaConf.create(plain), SampleConfig)
    if typed.classes not in (None, "all"):
        raise invalid(
            "classes", typed.classes, "classes=all draws a grid with one row per class; for one class use class=K"
        )
    if typed.classes is not None and typed.interpolate:
        raise invalid("classes", typed.classes, "interpolations take one class (class=K) or none, not classes=all")
    if typed.classes is not None and typed.label is not None:
        raise invalid("class", label, "give class=K (one class) or classes=all (every class), not both")
    for key in ("n", "batch_size"):
        if getattr(typed, key) <= 0:
            raise invalid(key, getattr(typed, key), "it must be greater than 0")
    if typed.frames < 2:
        raise invalid("frames", typed.frames, "an interpolation needs at least 2 frames (its two ends)")
    typed.ema = _check_ema(typed.ema)
    return typed


def check_fid_stats(cfg: DictConfig) -> FidStatsConfig:
    import_modules(OmegaConf.select(cfg, "imports", default=None) or [])
    datasets = DATASETS.names()  # those of ``imports`` too
    typed: FidStatsConfig = to_schema(cfg, FidStatsConfig)
    if typed.dataset.name not in datasets:
        raise invalid("dataset.name", typed.dataset.name, f"choose one of: {', '.join(datasets)}")
    if typed.n is not None and typed.n < 2:
        raise invalid("n", typed.n, "it must be at least 2, or null for the whole split")
    validate_inception(typed.inception)
    validate_protocol(typed.network, typed.resize, "")
    return typed


def check_export(cfg: DictConfig) -> ExportConfig:
    typed: ExportConfig = to_schema(cfg, ExportConfig)
    typed.ema = _check_ema(typed.ema)
    return typed
