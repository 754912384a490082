"""From a composed Hydra config to the typed schema: ``to_schema`` merges it into the dataclasses (unknown
keys, wrong types, missing values, non-finite numbers), each failure a ``ConfigError`` naming the key. The
only module that knows OmegaConf types; the ranges and combinations are sngan/cli/validation.py's."""

from __future__ import annotations

import contextlib
import difflib
import json
import math
from dataclasses import fields, is_dataclass
from importlib import resources
from typing import Any, get_args, get_type_hints

from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from sngan.config.schema import ConfigError, TrainConfig


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
            key = _down_to_the_value(cfg, key)  # +trian.steps=10 made trian: {steps: 10}
            raise unknown_setting(key, given(cfg, key), names) from None
        value = getattr(exc, "value", None)
        reason = str(getattr(exc, "msg", exc)).splitlines()[0]
        raise ConfigError(
            f"Invalid configuration: key '{key}' (value {value!r}): {reason}. "
            f"Fix the override or the YAML file; the schema is sngan/config/schema.py."
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


def hydra_args(args: list[str], schema: type) -> list[str]:
    """Command-line arguments as Hydra should read them. Hydra refuses ``key=value`` for a key its config lacks,
    with the advice to add the key (``+key=value``); for a typo that advice is wrong. So an override of a key that
    no setting of ``schema`` has is passed on as ``+key=value``, and the schema's check refuses it by name with
    the closest setting (``unknown_setting``: "there is no setting train.step; did you mean train.steps?")."""
    names = set(setting_names(schema))
    groups = {p.name for p in resources.files("sngan.configs").iterdir() if p.is_dir()}  # experiment=..., model=...
    return [_as_hydra_reads_it(arg, names, groups) for arg in args]


def _as_hydra_reads_it(arg: str, names: set[str], groups: set[str]) -> str:
    key, eq, _ = arg.partition("=")
    parts = key.split(".")
    plain = eq and key[:1].isalpha() and not any(c in key for c in "/@[ ") and parts[0] != "hydra"
    if not plain or key in names or key in groups or any(p.isdigit() for p in parts):
        return arg  # Hydra's own syntax (+, ~, groups, packages, hydra.*), a known setting, a list index
    return "+" + arg


def _down_to_the_value(cfg: DictConfig, key: str) -> str:
    """An unknown section holding one key (what one override makes): the dotted key of the value given."""
    with contextlib.suppress(OmegaConfBaseException):
        value = OmegaConf.select(cfg, key)
        while isinstance(value, DictConfig) and len(value) == 1:
            child = str(next(iter(value)))
            key, value = f"{key}.{child}", value[child]
    return key


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
    rules = [_preset(name) for name in _preset_names()]
    counts = lambda r: (int(r.n_fake), str(r.real_split), r.n_real, int(r.is_split_size), int(r.is_splits))  # noqa: E731
    return {str(rule.name): counts(rule) for rule in rules if rule.name != "none"}


def preset_protocols() -> dict[str, tuple[str, str]]:
    """Each named rule's feature network and resize (a rule's name stands for them too)."""
    rules = (_preset(name) for name in _preset_names())
    return {str(r.name): (str(r.get("network", "inception")), str(r.get("resize", "legacy"))) for r in rules}


def preset_rule(name: str) -> Any:
    """A rule as a typed ``MetricsConfig`` (``evaluate also=``): a preset of sngan/configs/metrics/ by name, or a
    rule file of one's own (a path ending in .yaml, written as those are; its ``defaults`` name presets)."""
    from pathlib import Path

    from sngan.config.schema import MetricsConfig

    if name.endswith(".yaml"):
        return to_schema(_with_bases(OmegaConf.load(Path(name).expanduser())), MetricsConfig)
    return to_schema(_preset(name), MetricsConfig)


def _preset_names() -> list[str]:
    files = resources.files("sngan.configs.metrics").iterdir()
    return sorted(p.name.removesuffix(".yaml") for p in files if p.name.endswith(".yaml"))


def _preset(name: str) -> DictConfig:
    """A rule's file with the rules its ``defaults`` name merged under it (as Hydra composes it)."""
    return _with_bases(OmegaConf.create((resources.files("sngan.configs.metrics") / f"{name}.yaml").read_text()))


def _with_bases(rule: DictConfig) -> DictConfig:
    """``rule`` merged over the presets its ``defaults`` name."""
    bases = [entry for entry in rule.pop("defaults", []) if entry != "_self_"]
    return OmegaConf.merge(*(_preset(str(base)) for base in bases), rule) if bases else rule


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


def to_yaml(config: dict[str, Any]) -> str:
    """A plain config dict as the YAML of config.yaml."""
    return OmegaConf.to_yaml(config)
