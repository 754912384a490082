"""A Hydra callback that checks the run folder before Hydra creates it.

Hydra makes ``hydra.run.dir`` (or the sweep folder) before the application
starts, so a folder that cannot be created would end in Hydra's own traceback.
This callback runs first and ends the process with a one-paragraph error and
exit code 2 instead.
"""

from __future__ import annotations

import sys
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from sngan.outputs import OutputError, ensure_folder


def ensure_writable(folder: str, key: str) -> None:
    try:
        ensure_folder(folder)
    except OutputError as exc:
        print(f"error: The run folder cannot be made: {exc} Set {key}=/path/to/a/writable/folder.", file=sys.stderr)
        sys.exit(2)


class RunFolderCheck(Callback):
    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        ensure_writable(str(config.hydra.run.dir), "hydra.run.dir")

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        ensure_writable(str(config.hydra.sweep.dir), "hydra.sweep.dir")
