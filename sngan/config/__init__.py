"""The training configuration: its typed schema (schema.py: which keys exist, their types) and the step from a
composed Hydra config to it (load.py). The values live in one place, the YAML files of sngan/configs/ (each
key there, with its comment); the ranges, choices and combinations are checked by sngan/cli/validation.py,
which asks the package that owns each choice. Every failure is a ``ConfigError`` whose message is one
paragraph naming the key, the bad value and what is allowed."""

from sngan.config.load import (
    config_diff,
    given,
    invalid,
    metric_presets,
    preset_protocols,
    setting_names,
    signal_number,
    to_container,
    to_schema,
    to_yaml,
    unknown_setting,
)
from sngan.config.schema import (
    DEFAULT_MEASURES,
    LIMIT_SEED,
    AugmentConfig,
    ConfigError,
    ConstraintConfig,
    DatasetConfig,
    InceptionConfig,
    LoggerConfig,
    LoopConfig,
    LossConfig,
    MetricsConfig,
    ModelConfig,
    OptimConfig,
    TrainConfig,
)

__all__ = [
    "DEFAULT_MEASURES",
    "LIMIT_SEED",
    "AugmentConfig",
    "ConfigError",
    "ConstraintConfig",
    "DatasetConfig",
    "InceptionConfig",
    "LoggerConfig",
    "LoopConfig",
    "LossConfig",
    "MetricsConfig",
    "ModelConfig",
    "OptimConfig",
    "TrainConfig",
    "config_diff",
    "given",
    "invalid",
    "metric_presets",
    "preset_protocols",
    "setting_names",
    "signal_number",
    "to_container",
    "to_schema",
    "to_yaml",
    "unknown_setting",
]
