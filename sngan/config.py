"""Typed schema of the training configuration, and its validation.

The values live in one place, the YAML files of sngan/configs/ (each key there, with
its comment); the dataclasses here say only which keys exist and their types.
This is the only module that knows OmegaConf types. ``validate`` merges the
composed config into the dataclass schema (unknown keys, wrong types), then
checks ranges and combinations, and returns a plain ``TrainConfig`` object.
Every failure is a ``ConfigError`` whose message is one paragraph naming the
key, the bad value and what is allowed.
"""

from __future__ import annotations

import difflib
import json
import math
from dataclasses import dataclass, fields, is_dataclass
from importlib import resources
from typing import Any, get_args, get_type_hints

from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException


class ConfigError(ValueError):
    """An invalid configuration; the message says which key and what to do."""


@dataclass
class ModelConfig:
    name: str
    z_dim: int
    width: float  # channel multiplier; < 1 builds narrow versions
    spectral_norm: bool  # follows constraint.spectral_norm (kept for old checkpoints); may not contradict it
    conditional: bool  # class-conditional: conditional-BN G and projection D (ResNets)


@dataclass
class DatasetConfig:
    name: str
    root: str
    split: str
    resolution: int | None  # None: the model's resolution
    hflip: bool
    size: int  # synthetic: number of images
    modes: int  # synthetic: number of prototypes K
    seed: int  # synthetic: seed of the prototypes
    cache: bool  # keep the decoded uint8 images in <root>/.sngan_cache (decoded once)
    limit: int | None  # train on a fixed random subset of this many images (the references keep the split)


@dataclass
class LossConfig:
    name: str


@dataclass
class OptimConfig:
    lr_g: float
    lr_d: float
    beta1: float
    beta2: float
    decay: str  # linear (to 0 at the last step) | none


@dataclass
class LoopConfig:
    steps: int  # generator updates
    n_dis: int  # discriminator updates per generator update
    batch_size_d: int
    batch_size_g: int
    log_every: int
    sample_every: int
    eval_every: int  # synthetic quality measure
    eval_samples: int
    checkpoint_every: int
    checkpoint_minutes: float | None  # also save every this many minutes of wall time
    max_minutes: float | None  # stop cleanly, with a checkpoint, after this many minutes
    keep_checkpoints: int
    grid_size: int
    monitor_every: int | None  # spectral norms, gradient norms, D output histograms; None: off
    ema_decay: float | None  # e.g. 0.999: keep an EMA of G (checkpointed, sampled)
    on_nonfinite: str  # stop (save the last good state) | skip (drop the update, count it)
    sync_bn: bool  # under torchrun: G's BatchNorm statistics over the global batch (CUDA only)
    requeue_signal: str | None  # e.g. USR1 (SLURM --signal): checkpoint, `scontrol requeue`, exit
    fake_labels: str  # conditional: fakes' classes as often as in the training set | uniform
    # Speed (sngan/training/speed.py): auto picks the fastest settings this device and launch support.
    precision: str  # auto | fp32 | bf16 (autocast; spectral norm and losses stay fp32)
    tf32: bool | None  # None: on for Ampere and newer GPUs
    compile: str  # auto | none | default | max (CUDA graphs)
    channels_last: bool | None  # None: on for CUDA and the CPU
    data_on: str  # auto | device (images held on the GPU) | host
    dry_run: bool  # build everything, print the plan (settings, sizes, schedule, disk), train nothing


@dataclass
class MetricsConfig:
    """A metric rule (config group metrics/); ``name`` labels every number it yields."""

    name: str  # none | fid_paper | fid_paper_final | fid50k_train | fid10k_test | a name of your own
    n_fake: int  # generated images for FID/KID/PRDC
    real_split: str  # train: the split the model trains on | test: the dataset's test split
    n_real: int | None  # None: the whole split; else n_real of them (scoring.reference_index)
    is_split_size: int  # images per Inception Score split; IS takes the first is_split_size x is_splits
    is_splits: int  # generated images (drawn beyond n_fake where that is more); one split: no IS std
    kid_subsets: int
    kid_subset_size: int
    prdc_n: int  # real and generated features (at most) for precision/recall/density/coverage; 0: off
    stats: str | None  # a statistics .npz to use (e.g. a published one) instead of the cache


@dataclass
class InceptionConfig:
    weights: str | None  # None: $TORCH_HOME/hub/checkpoints/pt_inception-2015-12-05-6726825d.pth
    stats_dir: str  # cache of reference statistics
    batch_size: int
    dims: int  # 64 | 192 | 768 | 2048 (pytorch-fid's blocks); papers use 2048


@dataclass
class LoggerConfig:
    """Where a run's numbers go besides TensorBoard and metrics.jsonl (config group logger/)."""

    name: str  # tensorboard | wandb | mlflow
    project: str  # wandb project; mlflow experiment
    entity: str | None  # wandb team or user
    mode: str | None  # wandb: online | offline | disabled; None: $WANDB_MODE, else online (W&B's own rule)
    tags: list[str]
    tracking_uri: str | None  # mlflow; None: $MLFLOW_TRACKING_URI or MLflow's default


@dataclass
class AugmentConfig:
    """What D sees of every image (config group augment/; sngan/training/augment.py)."""

    name: str  # none | diffaugment | ada
    p: float  # probability each transform applies (ada: the start)
    policy: list[str]  # diffaugment's transforms
    adaptive: bool  # ada: p follows r_t toward target
    target: float
    interval: int  # D updates between adjustments
    speed_kimg: float  # thousands of real images for p to move by 1


@dataclass
class ConstraintConfig:
    """How D is kept in check (config group constraint/; sngan/models/constraints.py); a constant the
    chosen constraint does not use is null."""

    name: str  # sn | none | weight_clip | wgan_gp | gan_gp | bn | ln | wn | orthonormal | wgan_gp_sn
    spectral_norm: bool  # fixed by the name (sn, wgan_gp_sn: true); model.spectral_norm follows it
    clip: float | None  # weight_clip: D's weights within [-clip, clip] after every update (paper: 0.01)
    gp_weight: float | None  # wgan_gp, gan_gp, wgan_gp_sn: lambda of the gradient penalty (paper: 10)
    ortho_weight: float | None  # orthonormal: coefficient of ||W^T W - I||_F^2 (ours: 1e-4, Brock et al.'s)


@dataclass
class TrainConfig:
    model: ModelConfig
    dataset: DatasetConfig
    loss: LossConfig
    optim: OptimConfig
    train: LoopConfig
    metrics: MetricsConfig
    inception: InceptionConfig
    logger: LoggerConfig
    augment: AugmentConfig
    constraint: ConstraintConfig
    seed: int
    device: str  # auto | cpu | cuda | cuda:N | mps
    resume: str | None  # None | auto | path to a checkpoint or run folder
    resume_force: bool  # resume although loss, n_dis, batches, optimizer, data or seed changed
    run_name: str


_POSITIVE = [
    "train.steps",
    "train.n_dis",
    "train.batch_size_d",
    "train.batch_size_g",
    "train.log_every",
    "train.sample_every",
    "train.eval_every",
    "train.eval_samples",
    "train.checkpoint_every",
    "train.keep_checkpoints",
    "train.grid_size",
    "model.z_dim",
    "model.width",
    "optim.lr_g",
    "optim.lr_d",
    "dataset.size",
    "dataset.modes",
]
LIMIT_SEED = 0  # dataset.limit's subset: the same images for every run seed (data.dataset.subset)  # fmt: skip


# A million samples put the synthetic quality's standard error below 0.0005 (sqrt(0.25 / 1e6)); more only
# lengthen every evaluation (memory stays flat: sngan/metrics/synthetic.py scores in chunks).
MAX_EVAL_SAMPLES = 1_000_000
WANDB_MODES = ("online", "offline", "disabled")


def _get(cfg: TrainConfig, dotted: str) -> Any:
    obj: Any = cfg
    for part in dotted.split("."):
        obj = getattr(obj, part)
    return obj


def invalid(key: str, value: Any, allowed: str) -> ConfigError:
    return ConfigError(f"Invalid configuration: {key}={value!r} is not allowed; {allowed}.")


def to_schema(cfg: DictConfig, schema_class: type = None) -> Any:  # type: ignore[assignment]
    missing = OmegaConf.missing_keys(cfg)
    if missing:
        key = sorted(missing)[0]
        raise ConfigError(
            f"Invalid configuration: {key} is required but has no value; set it on the command line ({key}=...)."
        )
    schema = OmegaConf.structured(schema_class or TrainConfig)
    try:
        merged = OmegaConf.merge(schema, cfg)
        unset = OmegaConf.missing_keys(merged)  # the YAML files give every key; a key left out is a bug there
        if unset:
            key = sorted(unset)[0]
            raise ConfigError(
                f"Invalid configuration: {key} has no value (the config files give none); set it on the command "
                f"line ({key}=...)."
            )
        typed = OmegaConf.to_object(merged)
    except OmegaConfBaseException as exc:
        key = getattr(exc, "full_key", None) or getattr(exc, "key", None) or "?"
        names = setting_names(schema_class or TrainConfig)
        if key != "?" and key.split("[")[0] not in names:  # a typo: the exception has no value; read the one given
            raise unknown_setting(key, given(cfg, key), names) from None
        value = getattr(exc, "value", None)
        reason = str(getattr(exc, "msg", exc)).splitlines()[0]
        raise ConfigError(
            f"Invalid configuration: key '{key}' (value {value!r}): {reason}. "
            f"Fix the override or the YAML file; the schema is sngan/config.py."
        ) from None
    _check_finite(typed)
    return typed


def setting_names(schema: type, prefix: str = "") -> list[str]:
    """Every dotted key of a schema dataclass, sections included: ``["model", "model.name", ...]``."""
    hints = get_type_hints(schema)  # the fields' types, not the strings postponed annotations leave
    names = []
    for f in fields(schema):
        names.append(prefix + f.name)
        section = next((t for t in (hints[f.name], *get_args(hints[f.name])) if is_dataclass(t)), None)
        names += setting_names(section, f"{prefix}{f.name}.") if section else []
    return names


def given(cfg: DictConfig, key: str) -> str:
    """The value ``cfg`` holds at ``key`` in JSON, as a command line would spell it (10, true, null, a string bare)."""
    try:
        value = OmegaConf.select(cfg, key)
        value = OmegaConf.to_container(value) if isinstance(value, (DictConfig, ListConfig)) else value
    except OmegaConfBaseException:  # an interpolation that does not resolve: the key alone says enough
        return "..."
    return value if isinstance(value, str) else json.dumps(value, default=str)


def unknown_setting(key: str, value: str, names: list[str]) -> ConfigError:
    """A key no schema has: its closest known key (a typo, mostly), else the settings of its section."""
    section, _, leaf = key.rpartition(".")
    peers = [n for n in names if n.count(".") == key.count(".")]  # train.lr_g may mean optim.lr_g, not optim
    siblings = [n for n in peers if n.rpartition(".")[0] == section]
    close = None
    for candidates in (siblings, peers):  # its own section first; names compared without their section
        leaves = {n.rpartition(".")[2]: n for n in reversed(candidates)}
        match = difflib.get_close_matches(leaf, list(leaves), n=1, cutoff=0.6)
        if match:
            close = leaves[match[0]]
            break
    where = f"under {section}" if section in names else "at the top level" if not section else f"of {section}"
    listed = ", ".join(n.rpartition(".")[2] for n in siblings) or "none"
    hint = f"did you mean {close}?" if close else f"the settings {where} are: {listed}."
    return ConfigError(
        f"Invalid configuration: {key}={value}: there is no setting {key}; {hint} Fix the override or the "
        f"YAML file (sngan/configs/ holds every setting, with its comment)."
    )


def _check_finite(typed: Any, prefix: str = "") -> None:
    """Every number of a typed config (nested sections too) is finite: YAML and Hydra read inf and nan as
    floats, which pass range checks such as lr > 0 and then wreck a run (nan) or never act (inf)."""
    for f in fields(typed):
        value, key = getattr(typed, f.name), f"{prefix}{f.name}"
        if is_dataclass(value):
            _check_finite(value, f"{key}.")
        elif isinstance(value, float) and not math.isfinite(value):
            raise invalid(
                key, value, "give a finite number (inf and nan are refused; null turns off a setting that allows it)"
            )


def validate(
    cfg: DictConfig,
    models: dict[str, int],
    losses: list[str],
    datasets: dict[str, int | None],
) -> TrainConfig:
    """Check ``cfg`` against the schema, ranges and registries.

    ``models`` maps model names to their resolution, ``datasets`` dataset names
    to their native resolution (None where it follows the model).
    """
    typed = to_schema(cfg)
    for key in _POSITIVE:
        if not _get(typed, key) > 0:
            raise invalid(key, _get(typed, key), "it must be greater than 0")
    if typed.train.eval_samples > MAX_EVAL_SAMPLES:
        raise invalid(
            "train.eval_samples", typed.train.eval_samples,
            f"it must be at most {MAX_EVAL_SAMPLES:,}: that many samples already measure the synthetic quality to "
            f"+-0.0005 (one standard error), and more only lengthen every evaluation",
        )  # fmt: skip
    for key, choices in (
        ("model.name", sorted(models)),
        ("loss.name", sorted(losses)),
        ("dataset.name", sorted(datasets)),
        ("optim.decay", ["linear", "none"]),
        ("train.on_nonfinite", ["stop", "skip"]),
        ("train.fake_labels", ["data", "uniform"]),
        ("train.precision", ["auto", "fp32", "bf16"]),
        ("train.compile", ["auto", "none", "default", "max"]),
        ("train.data_on", ["auto", "device", "host"]),
        ("logger.name", ["tensorboard", "wandb", "mlflow"]),
        ("augment.name", ["none", "diffaugment", "ada"]),
    ):
        if _get(typed, key) not in choices:
            raise invalid(key, _get(typed, key), f"choose one of: {', '.join(choices)}")
    if typed.logger.mode not in (None, *WANDB_MODES):  # None: W&B's own choice, $WANDB_MODE else online
        raise invalid(
            "logger.mode", typed.logger.mode,
            f"choose one of: {', '.join(WANDB_MODES)}, or null ($WANDB_MODE decides, else online)",
        )  # fmt: skip
    if typed.dataset.limit is not None and typed.dataset.limit <= 0:
        raise invalid("dataset.limit", typed.dataset.limit, "it must be greater than 0, or null for the whole split")
    for key in ("checkpoint_minutes", "max_minutes"):
        if getattr(typed.train, key) is not None and getattr(typed.train, key) <= 0:
            raise invalid(f"train.{key}", getattr(typed.train, key), "it must be greater than 0, or null for off")
    signame = typed.train.requeue_signal
    if signame is not None and signal_number(signame) is None:
        raise invalid("train.requeue_signal", signame, "name a signal a scheduler sends, e.g. USR1 or USR2")
    if typed.train.monitor_every is not None and typed.train.monitor_every <= 0:
        raise invalid("train.monitor_every", typed.train.monitor_every, "it must be greater than 0, or null for off")
    if typed.train.ema_decay is not None and not 0.0 < typed.train.ema_decay < 1.0:
        raise invalid("train.ema_decay", typed.train.ema_decay, "it lies strictly between 0 and 1, or null for no EMA")
    if not (0.0 <= typed.optim.beta1 < 1.0 and 0.0 <= typed.optim.beta2 < 1.0):
        raise invalid("optim.beta1/beta2", (typed.optim.beta1, typed.optim.beta2), "Adam's betas lie in [0, 1)")
    if typed.model.conditional and typed.dataset.name == "stl10" and "unlabeled" in typed.dataset.split:
        raise ConfigError(
            f"Invalid configuration: model.conditional=true needs class labels, but STL-10's "
            f"'{typed.dataset.split}' split holds unlabeled images. Use dataset.split=train (5,000 labeled "
            f"images) or train the unconditional model (model.conditional=false)."
        )
    validate_augment(typed.augment)
    validate_metrics(typed.metrics, typed.inception, typed.dataset.name)
    model_res = models[typed.model.name]
    data_res = typed.dataset.resolution or datasets[typed.dataset.name] or model_res
    if data_res != model_res:
        raise ConfigError(
            f"Invalid configuration: model '{typed.model.name}' generates {model_res}x{model_res} images "
            f"but dataset '{typed.dataset.name}' is {data_res}x{data_res}. Pick a model of that "
            f"resolution ({', '.join(n for n, r in sorted(models.items()) if r == data_res) or 'none'}) "
            f"or another dataset."
        )
    typed.dataset.resolution = model_res
    return typed


def signal_number(name: str) -> int | None:
    """The number of a catchable signal other than TERM/INT (those already stop cleanly), or None."""
    import signal

    sig = getattr(signal, name if name.startswith("SIG") else f"SIG{name}", None)
    if not isinstance(sig, signal.Signals) or sig in (signal.SIGKILL, signal.SIGSTOP, signal.SIGTERM, signal.SIGINT):
        return None
    return int(sig)


def metric_presets() -> dict[str, tuple[int, str, int | None, int, int]]:
    """The named metric rules of sngan/configs/metrics/ (``none`` aside): name -> (n_fake, real_split, n_real,
    is_split_size, is_splits). A rule's name stands for its counts, so a run that changes them must rename
    the rule (the IS counts are checked where numbers are made: ``sngan.metrics.scoring.check_is_label``)."""
    presets = {}
    for path in sorted(resources.files("sngan.configs.metrics").iterdir(), key=lambda p: p.name):
        if path.name.endswith(".yaml"):
            rule = OmegaConf.create(path.read_text())
            if rule.name != "none":
                presets[str(rule.name)] = (
                    int(rule.n_fake), str(rule.real_split), rule.n_real, int(rule.is_split_size), int(rule.is_splits)
                )  # fmt: skip
    return presets


WITH_TEST_SPLIT = ("cifar10", "cifar100", "stl10")
PRDC_MAX = 10_000  # the real features a statistics file keeps (sngan.metrics.fid.KID_FEATURES_KEPT)
INCEPTION_DIMS = (64, 192, 768, 2048)


AUGMENT_POLICIES = ("color", "translation", "cutout")


def validate_constraint(constraint: ConstraintConfig, users: dict[str, tuple[str, ...]]) -> None:
    """The constants of ``constraint``: greater than 0 where it uses them, null where it does not (a value
    there would be silently ignored). ``users``: each constraint name and the constants it reads."""
    uses = users[constraint.name]
    for key in ("clip", "gp_weight", "ortho_weight"):
        value = getattr(constraint, key)
        if key in uses and (value is None or not value > 0):
            raise invalid(f"constraint.{key}", value, f"constraint={constraint.name} needs it greater than 0")
        if key not in uses and value is not None:
            others = ", ".join(name for name, needs in sorted(users.items()) if key in needs)
            raise invalid(
                f"constraint.{key}", value,
                f"constraint={constraint.name} does not use it: set it to null, or choose a constraint that "
                f"does ({others})",
            )  # fmt: skip


def validate_augment(augment: AugmentConfig) -> None:
    unknown = [name for name in augment.policy if name not in AUGMENT_POLICIES]
    if unknown or not augment.policy:
        raise invalid("augment.policy", augment.policy, f"list one or more of: {', '.join(AUGMENT_POLICIES)}")
    if not 0.0 <= augment.p <= 1.0:
        raise invalid("augment.p", augment.p, "it is a probability: between 0 and 1")
    if augment.adaptive and augment.name != "ada":
        raise invalid("augment.adaptive", True, f"p adapts under augment=ada only, not augment={augment.name}")
    if not 0.0 < augment.target < 1.0:
        raise invalid("augment.target", augment.target, "r_t's target lies strictly between 0 and 1 (ADA: 0.6)")
    for key in ("interval", "speed_kimg"):
        if not getattr(augment, key) > 0:
            raise invalid(f"augment.{key}", getattr(augment, key), "it must be greater than 0")


def validate_inception(inception: InceptionConfig) -> None:
    if inception.dims not in INCEPTION_DIMS:
        raise invalid("inception.dims", inception.dims, f"choose one of {', '.join(map(str, INCEPTION_DIMS))}")
    if inception.batch_size <= 0:
        raise invalid("inception.batch_size", inception.batch_size, "it must be greater than 0")


def validate_metrics(metrics: MetricsConfig, inception: InceptionConfig, dataset: str | None) -> None:
    """Ranges of a metric rule, its label, and whether the dataset has the split it needs (None: the
    dataset is not known yet, as for evaluate before it reads the checkpoint; checked again then)."""
    validate_inception(inception)
    if metrics.name == "none":
        return
    for key in ("n_fake", "is_split_size", "is_splits", "kid_subsets", "kid_subset_size"):
        if getattr(metrics, key) < (2 if key != "is_splits" else 1):
            raise invalid(f"metrics.{key}", getattr(metrics, key), "it must be at least 2 (1 for is_splits)")
    if metrics.prdc_n != 0 and not 10 <= metrics.prdc_n <= PRDC_MAX:
        raise invalid(
            "metrics.prdc_n", metrics.prdc_n,
            f"it must be 0 (no precision/recall/density/coverage) or between 10 and {PRDC_MAX:,} (the real "
            f"features a statistics file keeps)",
        )  # fmt: skip
    for key, k in (("n_fake", 3), ("n_real", 5)):  # precision/recall's k = 3, density/coverage's k = 5
        if metrics.prdc_n and (getattr(metrics, key) or k + 1) <= k:
            raise invalid(
                f"metrics.{key}", getattr(metrics, key),
                f"precision/recall/density/coverage need more than {k} {key.split('_')[1]} images; give more, or "
                f"turn them off (metrics.prdc_n=0)",
            )  # fmt: skip
    if metrics.n_real is not None and metrics.n_real < 2:
        raise invalid("metrics.n_real", metrics.n_real, "it must be at least 2, or null for the whole split")
    if metrics.real_split not in ("train", "test"):
        raise invalid("metrics.real_split", metrics.real_split, "choose train (the training split) or test")
    if metrics.real_split == "test" and dataset is not None and dataset not in WITH_TEST_SPLIT:
        raise ConfigError(
            f"Invalid configuration: metrics '{metrics.name}' compares with the test split, but dataset "
            f"'{dataset}' has none. Use a rule on the training split (metrics=fid_paper or fid50k_train)."
        )
    preset = metric_presets().get(metrics.name)
    if preset is not None and preset[:3] != (metrics.n_fake, metrics.real_split, metrics.n_real):
        raise ConfigError(
            f"Invalid configuration: metrics.name={metrics.name} names a fixed rule ({preset[0]} generated vs "
            f"{preset[2] or 'all'} {preset[1]} images) but the settings say {metrics.n_fake} vs "
            f"{metrics.n_real or 'all'} {metrics.real_split}. Give the changed rule a name of its own "
            f"(metrics.name=...), so numbers of different rules never share a label."
        )


def config_diff(old: dict[str, Any], new: dict[str, Any], prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two plain config dicts."""
    keys = sorted(set(old) | set(new))
    diff: list[str] = []
    for key in keys:
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            diff += config_diff(a, b, f"{prefix}{key}.")
        elif a != b:
            diff.append(f"{prefix}{key}")
    return diff


def to_container(cfg: DictConfig) -> dict[str, Any]:
    """The resolved config as plain dicts/lists/scalars (safe for weights_only loads)."""
    return OmegaConf.to_container(cfg, resolve=True)  # type: ignore[return-value]
