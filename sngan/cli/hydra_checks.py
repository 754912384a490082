"""A Hydra callback that checks the run folder before Hydra creates it, and the resolver that keeps
torchrun's other ranks from writing Hydra's files into the shared run folder.

Hydra makes ``hydra.run.dir`` (or the sweep folder) before the application
starts, so a folder that cannot be created would end in Hydra's own traceback.
This callback runs first and ends the process with a one-paragraph error and
exit code 2 instead. It also takes the run folder's lock (``sngan.cli.run_lock``) before
Hydra writes anything into the folder.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from sngan.cli.outputs import OutputError, ensure_folder
from sngan.cli.run_lock import FolderBusy, hold


def ensure_writable(folder: str, key: str) -> None:
    try:
        ensure_folder(folder)
    except OutputError as exc:
        print(f"error: The run folder cannot be made: {exc} Set {key}=/path/to/a/writable/folder.", file=sys.stderr)
        sys.exit(2)


def hold_run_folder(folder: str) -> None:
    """Lock the run folder before Hydra writes into it (.hydra/, the log), so that a second training
    refused here changes nothing in it. Under torchrun, rank 0 holds it for all ranks."""
    if int(os.environ.get("RANK", 0)) != 0:
        return
    try:
        hold(folder)
    except FolderBusy as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)


class RunFolderCheck(Callback):
    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        ensure_writable(str(config.hydra.run.dir), "hydra.run.dir")
        hold_run_folder(str(config.hydra.run.dir))

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        ensure_writable(str(config.hydra.sweep.dir), "hydra.sweep.dir")


def register_resolvers() -> None:
    """``${sngan_rank0:VALUE}``: VALUE on rank 0 (and without torchrun), null on the other ranks. Used for
    ``hydra.output_subdir`` so that only rank 0 writes ``.hydra/`` into the run folder all ranks share."""
    if not OmegaConf.has_resolver("sngan_rank0"):
        OmegaConf.register_new_resolver(
            "sngan_rank0", lambda value: value if int(os.environ.get("RANK", 0)) == 0 else None
        )
