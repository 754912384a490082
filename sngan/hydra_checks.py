"""A Hydra callback that checks the run folder before Hydra creates it.

Hydra makes ``hydra.run.dir`` (or the sweep folder) before the application
starts, so a folder that cannot be created would end in Hydra's own traceback.
This callback runs first and ends the process with a one-paragraph error and
exit code 2 instead.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig


def ensure_writable(folder: str, key: str) -> None:
    path = Path(folder)
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".sngan_write_check_{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        print(
            f"error: The run folder '{path}' cannot be created or written ({exc.strerror or exc}). Pick a "
            f"writable location with {key}=/path/to/folder (or run from a writable working directory); "
            f"nothing was written.",
            file=sys.stderr,
        )
        sys.exit(2)


class RunFolderCheck(Callback):
    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        ensure_writable(str(config.hydra.run.dir), "hydra.run.dir")

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        ensure_writable(str(config.hydra.sweep.dir), "hydra.sweep.dir")
