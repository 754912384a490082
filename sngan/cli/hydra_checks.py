"""A Hydra callback that checks the run folder before Hydra creates it, the resolver that keeps
torchrun's other ranks from writing Hydra's files into the shared run folder, and ``typos_named``, which
hands a misspelt override to the schema's check instead of Hydra's.

Hydra makes ``hydra.run.dir`` (or the sweep folder) before the application
starts, so a folder that cannot be created would end in Hydra's own traceback.
This callback runs first and ends the process with a one-paragraph error and
exit code 2 instead. It also takes the run folder's lock (``sngan.cli.run_lock``) before
Hydra writes anything into the folder.
"""

from __future__ import annotations

import contextlib
import functools
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from sngan.cli.run_lock import LOCK_NAME, FolderBusy, hold, release
from sngan.config.load import hydra_args
from sngan.utils.outputs import OutputError, ensure_folder, write_text

F = TypeVar("F", bound=Callable[..., Any])


def typos_named(schema: type) -> Callable[[F], F]:
    """Around a command's Hydra main: an override of a key that ``schema`` lacks (``train.step=10``) reaches the
    schema's check, which names the closest setting, instead of Hydra's advice to add the key with a +."""

    def wrap(main: F) -> F:
        @functools.wraps(main)
        def command(*args: Any, **kwargs: Any) -> Any:
            if not args and not kwargs:  # the command line, as Hydra reads it next
                sys.argv[1:] = hydra_args(sys.argv[1:], schema)
            return main(*args, **kwargs)

        return command  # type: ignore[return-value]

    return wrap


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


# Run folders this process made (they did not exist before the command), each with the highest of its folders
# that did not exist either (outputs/ on a first run): a refused start or a dry run removes such a folder
# again where it holds nothing but Hydra's empty log, and those of its parents it made that are left empty
# (``remove_if_new``).
MADE: dict[Path, Path] = {}


class RunFolderCheck(Callback):
    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        folder = Path(str(config.hydra.run.dir))
        if not folder.exists():
            top = folder.resolve()
            while not top.parent.exists():
                top = top.parent
            MADE[folder.resolve()] = top
        ensure_writable(str(folder), "hydra.run.dir")
        hold_run_folder(str(folder))

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        ensure_writable(str(config.hydra.sweep.dir), "hydra.sweep.dir")


def register_resolvers() -> None:
    """``${sngan_rank0:VALUE}``: VALUE on rank 0 (and without torchrun), null on the other ranks. Used for
    ``hydra.output_subdir`` so that only rank 0 writes ``.hydra/`` into the run folder all ranks share."""
    if not OmegaConf.has_resolver("sngan_rank0"):
        OmegaConf.register_new_resolver(
            "sngan_rank0", lambda value: value if int(os.environ.get("RANK", 0)) == 0 else None
        )


def remove_if_new(folder: Path) -> None:
    """Undo the run folder of a command that wrote nothing into it (a refused start, a dry run): if this
    process made it and it holds only Hydra's empty log and the lock, remove it, and the parents it made
    that are then empty (``outputs/quickstart/``). A folder that existed before is left as it is."""
    folder = Path(folder).resolve()
    if folder not in MADE:
        return
    release(folder)
    log = folder / "train.log"
    with contextlib.suppress(OSError):  # rmdir removes only an empty folder: another run's stays
        if log.is_file() and log.stat().st_size == 0:
            log.unlink()
        if not any(p.name != LOCK_NAME for p in folder.iterdir()):
            folder.rmdir()
            made = folder
            while made != MADE[folder]:
                made = made.parent
                made.rmdir()


def write_hydra_record(task: DictConfig, run_dir: Path) -> None:
    """Hydra's record of the command in ``.hydra/`` (config.yaml, hydra.yaml, overrides.yaml, as Hydra writes
    them), written by train once the run passes its checks: train sets ``hydra.output_subdir`` to null, so
    that a refused start, a refused resume or a dry run leaves the run folder's record of its run as it was."""
    from hydra.core.hydra_config import HydraConfig

    hydra_cfg = HydraConfig.instance().cfg
    assert hydra_cfg is not None
    folder = Path(run_dir) / ".hydra"
    folder.mkdir(parents=True, exist_ok=True)
    record = {"config.yaml": task, "hydra.yaml": hydra_cfg, "overrides.yaml": hydra_cfg.hydra.overrides.task}
    for name, node in record.items():
        write_text(folder / name, OmegaConf.to_yaml(node))
