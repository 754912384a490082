"""``imports=``: modules of one's own, imported before the settings that name what they register (a dataset,
a measure, a model, a loss, a constraint) are checked. A run stores its list, so that whatever reads its
checkpoints (evaluate, sample, export, load_generator) imports them too."""

from __future__ import annotations

import importlib

from sngan.config import ConfigError


def import_modules(names: list[str] | str | None) -> None:
    """Import each module of ``names`` (one name alone is taken as a list of one)."""
    for name in [names] if isinstance(names, str) else names or []:
        try:
            importlib.import_module(str(name))
        except Exception as exc:  # ImportError, or the module's own error
            raise ConfigError(
                f"Invalid configuration: imports=[{name}]: the module cannot be imported ({type(exc).__name__}: "
                f"{exc}). Check its name and that its folder is on the path (the working folder is, with python -m), "
                f"or drop it from imports."
            ) from exc
