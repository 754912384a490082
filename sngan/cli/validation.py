"""Ranges, choices and combinations of the training settings, each asked of the package that owns it (the
models, losses, datasets, augmentations, Inception blocks and metric rules), after ``config.to_schema`` has
checked keys and types. Every failure is a ``ConfigError`` naming the key, the bad value and what is allowed."""

from __future__ import annotations

from typing import Any

from sngan.config import (
    AugmentConfig,
    ConfigError,
    ConstraintConfig,
    InceptionConfig,
    MetricsConfig,
    TrainConfig,
    invalid,
    metric_presets,
    preset_protocols,
    signal_number,
    to_schema,
)
from sngan.data import DATASETS
from sngan.metrics import MEASURES
from sngan.metrics.fid import KID_FEATURES_KEPT as PRDC_MAX  # the real features a statistics file keeps
from sngan.metrics.inception import DIMS as INCEPTION_DIMS
from sngan.metrics.resize import RESIZES
from sngan.metrics.scoring import NETWORKS
from sngan.models.constraints import CONSTANTS
from sngan.training.augment import AUGMENT_NAMES, AUGMENT_POLICIES

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
# A million samples put the synthetic quality's standard error below 0.0005 (sqrt(0.25 / 1e6)); more only
# lengthen every evaluation (memory stays flat: sngan/metrics/synthetic.py scores in chunks).
MAX_EVAL_SAMPLES = 1_000_000
WANDB_MODES = ("online", "offline", "disabled")


def _get(cfg: TrainConfig, dotted: str) -> Any:
    obj: Any = cfg
    for part in dotted.split("."):
        obj = getattr(obj, part)
    return obj


def validate(
    cfg: Any,
    models: dict[str, int],
    losses: list[str],
    datasets: dict[str, int | None],
) -> TrainConfig:
    """Check ``cfg`` against the schema, ranges and registries.

    ``models`` maps model names to their resolution, ``datasets`` dataset names
    to their native resolution (None where it follows the model).
    """
    typed = to_schema(cfg)
    check_ranges(typed)
    check_choices(typed, models, losses, datasets)
    source, split = DATASETS.get(typed.dataset.name), typed.dataset.split
    if typed.model.conditional and not source.labelled(split):
        title = source.title or typed.dataset.name
        raise ConfigError(
            f"Invalid configuration: model.conditional=true needs class labels, but {title}'s "
            f"'{split}' split holds unlabeled images: {source.labels_hint.format(root=typed.dataset.root)}, or "
            f"train the unconditional model (model.conditional=false)."
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


def check_ranges(typed: TrainConfig) -> None:
    """Counts and rates greater than 0; what may be null, null or greater than 0; probabilities within [0, 1)."""
    for key in _POSITIVE:
        if not _get(typed, key) > 0:
            raise invalid(key, _get(typed, key), "it must be greater than 0")
    if typed.train.eval_samples > MAX_EVAL_SAMPLES:
        raise invalid(
            "train.eval_samples", typed.train.eval_samples,
            f"it must be at most {MAX_EVAL_SAMPLES:,}: that many samples already measure the synthetic quality to "
            f"+-0.0005 (one standard error), and more only lengthen every evaluation",
        )  # fmt: skip
    for key in ("dataset.limit", "train.checkpoint_minutes", "train.max_minutes", "train.monitor_every"):
        if _get(typed, key) is not None and _get(typed, key) <= 0:
            what = "the whole split" if key == "dataset.limit" else "off"
            raise invalid(key, _get(typed, key), f"it must be greater than 0, or null for {what}")
    if typed.train.ema_decay is not None and not 0.0 < typed.train.ema_decay < 1.0:
        raise invalid("train.ema_decay", typed.train.ema_decay, "it lies strictly between 0 and 1, or null for no EMA")
    if not (0.0 <= typed.optim.beta1 < 1.0 and 0.0 <= typed.optim.beta2 < 1.0):
        raise invalid("optim.beta1/beta2", (typed.optim.beta1, typed.optim.beta2), "Adam's betas lie in [0, 1)")


def check_choices(
    typed: TrainConfig, models: dict[str, int], losses: list[str], datasets: dict[str, int | None]
) -> None:
    """Names that must be one of a registry's or a fixed list."""
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
        ("augment.name", list(AUGMENT_NAMES)),
    ):
        if _get(typed, key) not in choices:
            raise invalid(key, _get(typed, key), f"choose one of: {', '.join(choices)}")
    if typed.logger.mode not in (None, *WANDB_MODES):  # None: W&B's own choice, $WANDB_MODE else online
        raise invalid(
            "logger.mode", typed.logger.mode,
            f"choose one of: {', '.join(WANDB_MODES)}, or null ($WANDB_MODE decides, else online)",
        )  # fmt: skip
    signame = typed.train.requeue_signal
    if signame is not None and signal_number(signame) is None:
        raise invalid("train.requeue_signal", signame, "name a signal a scheduler sends, e.g. USR1 or USR2")


def validate_constraint(constraint: ConstraintConfig, users: dict[str, tuple[str, ...]]) -> None:
    """The constants of ``constraint``: greater than 0 where it uses them, null where it does not (a value
    there would be silently ignored). ``users``: each constraint name and the constants it reads."""
    uses = users[constraint.name]
    for key in CONSTANTS:
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
        raise invalid("inception.dims", inception.dims, f"choose one of {', '.join(map(str, sorted(INCEPTION_DIMS)))}")
    if inception.batch_size <= 0:
        raise invalid("inception.batch_size", inception.batch_size, "it must be greater than 0")


def validate_protocol(network: str, resize: str, prefix: str) -> None:
    """A feature network and a resize of those there are (sngan/metrics/inception.py, dinov2.py, resize.py)."""
    if network not in NETWORKS:
        raise invalid(f"{prefix}network", network, f"choose one of: {', '.join(NETWORKS)}")
    if resize not in RESIZES:
        raise invalid(f"{prefix}resize", resize, f"choose one of: {', '.join(RESIZES)}")


def validate_rule_protocol(metrics: MetricsConfig) -> None:
    """A rule's network and resize: ones there are, IS on Inception only, a preset's name standing for its own."""
    validate_protocol(metrics.network, metrics.resize, "metrics.")
    if metrics.network != "inception" and "is" in metrics.measures:
        raise invalid(
            "metrics.measures", metrics.measures,
            f"the Inception Score needs Inception's classifier; on metrics.network={metrics.network} list fid, kid "
            f"and prdc only (or score IS under a rule of its own on Inception, e.g. with also=)",
        )  # fmt: skip
    protocol = preset_protocols().get(metrics.name)
    if protocol is not None and protocol != (metrics.network, metrics.resize):
        raise ConfigError(
            f"Invalid configuration: metrics.name={metrics.name} names a fixed rule on network={protocol[0]} "
            f"resize={protocol[1]}, but the settings say network={metrics.network} resize={metrics.resize}. Give the "
            f"changed rule a name of its own (metrics.name=...), so numbers of different protocols never share a label."
        )


def validate_metrics(metrics: MetricsConfig, inception: InceptionConfig, dataset: str | None) -> None:
    """Ranges of a metric rule, its label, and whether the dataset has the split it needs (None: the
    dataset is not known yet, as for evaluate before it reads the checkpoint; checked again then)."""
    validate_inception(inception)
    if metrics.name == "none":
        return
    for key in ("n_fake", "is_split_size", "is_splits", "kid_subsets", "kid_subset_size"):
        if getattr(metrics, key) < (2 if key != "is_splits" else 1):
            raise invalid(f"metrics.{key}", getattr(metrics, key), "it must be at least 2 (1 for is_splits)")
    if "prdc" in metrics.measures and metrics.prdc_n != 0 and not 10 <= metrics.prdc_n <= PRDC_MAX:
        raise invalid(
            "metrics.prdc_n", metrics.prdc_n,
            f"it must be 0 (no precision/recall/density/coverage) or between 10 and {PRDC_MAX:,} (the real "
            f"features a statistics file keeps)",
        )  # fmt: skip
    for key, k in (("n_fake", 3), ("n_real", 5)):  # precision/recall's k = 3, density/coverage's k = 5
        if "prdc" in metrics.measures and metrics.prdc_n and (getattr(metrics, key) or k + 1) <= k:
            raise invalid(
                f"metrics.{key}", getattr(metrics, key),
                f"precision/recall/density/coverage need more than {k} {key.split('_')[1]} images; give more, or "
                f"turn them off (metrics.prdc_n=0)",
            )  # fmt: skip
    if metrics.n_real is not None and metrics.n_real < 2:
        raise invalid("metrics.n_real", metrics.n_real, "it must be at least 2, or null for the whole split")
    validate_rule_protocol(metrics)
    unknown = [name for name in metrics.measures if name not in MEASURES]
    if unknown or not metrics.measures:
        raise invalid("metrics.measures", metrics.measures, f"list one or more of: {', '.join(MEASURES.names())}")
    if metrics.real_split not in ("train", "test"):
        raise invalid("metrics.real_split", metrics.real_split, "choose train (the training split) or test")
    if (
        metrics.real_split == "test"
        and dataset is not None
        and not (dataset in DATASETS and DATASETS.get(dataset).test_split)
    ):
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
