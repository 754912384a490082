"""``python -m sngan.train``: train an SNGAN with Hydra overrides.

    python -m sngan.train experiment=quickstart
    python -m sngan.train model=resnet32 dataset=cifar10 train.steps=50000
    python -m sngan.train hydra.run.dir=outputs/myrun resume=auto

The run folder (Hydra's output dir) receives config.yaml (resolved),
provenance.json, tb/ (TensorBoard), samples/, checkpoints/ and metrics.jsonl.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import hydra
from omegaconf import DictConfig

from sngan.cli.errors import run_or_exit
from sngan.cli.hydra_checks import register_resolvers, remove_if_new, typos_named, write_hydra_record
from sngan.cli.log_file import copied_to
from sngan.cli.settings import check_train
from sngan.cli.start import start
from sngan.config import TrainConfig, signal_number, to_container
from sngan.training.iteration import NonFiniteError
from sngan.training.speed import keep_freed_memory
from sngan.training.stopping import Interrupted, TimeLimit, requeue
from sngan.training.wrappers import CompileFailed, CudaContextLost
from sngan.utils import checkpoint as ckpt
from sngan.utils import distributed
from sngan.utils.distributed import Dist, RankFailed

register_resolvers()


@typos_named(TrainConfig)
@hydra.main(version_base="1.3", config_path="pkg://sngan.configs", config_name="train")
def main(raw: DictConfig) -> dict[str, float]:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    here = distributed.current()
    if here.enabled and HydraConfig.get().mode == RunMode.MULTIRUN:
        print("error: torchrun runs one training run over several processes; it cannot run a Hydra sweep (-m). "
              "Launch each run of the sweep with its own torchrun, or sweep with hydra/launcher=submitit_slurm "
              "on one GPU per run.", file=sys.stderr)  # fmt: skip
        sys.exit(2)
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    say = (lambda text: print(text, file=sys.stderr)) if here.is_main else (lambda text: None)
    # The run's story, after the fact: held back until the run starts, so that a refused start or a dry run
    # leaves the folder's log (and Hydra's record of the command, written then too) as it was.
    with copied_to(run_dir / "train.log", enabled=here.is_main, held=True) as commit:
        started: list[bool] = []

        def record() -> None:
            write_hydra_record(raw, run_dir)
            commit()
            started.append(True)

        try:
            return _main(raw, run_dir, here, say, record)
        except Exception:  # a crash: its log is kept, the folder too
            started.append(True)
            raise
        finally:
            if not started and here.is_main:
                remove_if_new(run_dir)  # a refusal, a dry run or Ctrl-C before the start: no new empty folder


def _main(
    raw: DictConfig, run_dir: Path, here: Dist, say: Callable[[str], None], record: Callable[[], None]
) -> dict[str, float]:
    resume_hint = f"the same command plus: hydra.run.dir={run_dir} resume=auto"
    try:
        keep_freed_memory()  # malloc keeps large freed blocks for reuse (sngan/training/speed.py)
        result = run_or_exit(
            lambda: start(check_train(raw), to_container(raw), run_dir, record),
            NonFiniteError, RankFailed, CompileFailed, CudaContextLost,
        )  # fmt: skip
    except Interrupted as stopped:
        where = f"Training {stopped} with a checkpoint in {run_dir / ckpt.CHECKPOINT_DIR}."
        if raw.train.requeue_signal is not None and stopped.signum == signal_number(raw.train.requeue_signal):
            if here.is_main:
                say(f"{where} {requeue()} The requeued job continues with {resume_hint}")
            sys.exit(0)
        say(f"{where} Continue with {resume_hint}")
        sys.exit(128 + stopped.signum)
    except TimeLimit as limited:
        say(f"Training {limited} with a checkpoint in {run_dir / ckpt.CHECKPOINT_DIR}. Continue (e.g. in the next "
            f"job) with {resume_hint}")  # fmt: skip
        return {}
    except KeyboardInterrupt:
        latest = ckpt.find_latest(run_dir)
        say(f"Interrupted at once; newest checkpoint: {latest or 'none'}.")
        sys.exit(130)
    if result:
        say("final: " + ", ".join(f"{k}={v:.4g}" for k, v in result.items()))
    if not raw.train.dry_run:
        say(f"Run folder: {run_dir}")
    return result


def launch() -> None:
    """The command line: under torchrun, join the other ranks first (they share rank 0's run folder)."""
    distributed.setup()
    clean = False
    try:
        main()
        clean = True
    except SystemExit as exc:
        clean = exc.code in (None, 0)  # every rank stops alike (a requeue, a time limit)
        raise
    finally:
        distributed.teardown(clean)


if __name__ == "__main__":
    # Run the copy imported as `sngan.train`, not this `__main__` one: launchers that pickle the task
    # function (submitit) then pickle it by reference instead of by value.
    from sngan.train import launch as launch_module

    launch_module()
