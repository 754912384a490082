"""What the updates call: DistributedDataParallel wrappers under torchrun, torch.compile'd modules
under train.compile. The plain modules stay as they are for sampling, monitoring, evaluation and
checkpoints; ``Run`` keeps the wrappers beside them."""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar

import torch
from torch.nn.parallel import DistributedDataParallel

from sngan.config import TrainConfig
from sngan.training import distributed
from sngan.training.distributed import Dist
from sngan.training.memory import first_line, is_out_of_memory
from sngan.training.speed import Speed, compiled
from sngan.training.state import Run, rollback, snapshot

T = TypeVar("T")


def distribute(run: Run, cfg: TrainConfig, device: torch.device, here: Dist) -> None:
    """Wrap G and D in DistributedDataParallel (which starts every rank from rank 0's weights and
    buffers, spectral-norm u and v included, and keeps the buffers in step at every forward)."""
    if not here.enabled:
        return
    if cfg.train.sync_bn:  # the converted layers keep G's parameters: the optimizer needs no rebuilding
        run.generator = torch.nn.SyncBatchNorm.convert_sync_batchnorm(run.generator)
    ids = [device.index] if device.type == "cuda" else None
    run.g_update = DistributedDataParallel(run.generator, device_ids=ids)
    run.d_update = DistributedDataParallel(run.discriminator, device_ids=ids)


def accelerate(run: Run, speed: Speed) -> None:
    """Route the updates through torch.compile'd networks (the plain modules stay as they are: sampling,
    monitoring, evaluation and checkpoints use them). A module reached two ways shares one compiled copy."""
    if speed.compile == "none":
        return
    # A fresh cache for each run: spectral norm gives a new D's layers classes of their own, so every run's D
    # is a new compile of the same functions, and after dynamo's limit (8 per function: 2 a run) it would
    # silently run eagerly from the fifth run of a process on (a sweep, benchmark.py, the GPU tests).
    torch._dynamo.reset()
    g_read, d_read = compiled(run.generator, speed.compile), compiled(run.discriminator, speed.compile)
    run.g_update = compiled(run.g_update, speed.compile) if run.g_update is not None else g_read
    run.d_update = compiled(run.d_update, speed.compile) if run.d_update is not None else d_read
    run.g_read, run.d_read = g_read, d_read


TRIAL_STEPS = 3  # compile=max: the first call warms up, the second records the CUDA graphs, the third replays


class CompileFailed(RuntimeError):
    """An explicitly asked-for train.compile failed in a first compiled step that runs eagerly."""


class CompileTrial:
    """The first compiled steps of a process, each from a snapshot: if one raises (torch.compile or CUDA-graph
    capture failing on a card, driver or torch nobody tried), the state goes back to before it and the same
    step runs eagerly. If the eager step succeeds too, the failure was the compiler's: under
    train.compile=auto the run trains on eagerly with one note; a compile the user asked for by name stops
    with ``CompileFailed``, the state after the last completed step saved. An error the eager step meets as
    well is the run's own and is raised as it is. Out-of-memory errors pass untouched (the loop's own).
    ``fell_back(speed, why)`` is told the eager settings a run goes on with, and why (provenance.json)."""

    def __init__(
        self,
        run: Run,
        speed: Speed,
        requested: str,
        save: Callable[[Run, str], Path],
        fell_back: Callable[[Speed, str], None] | None = None,
    ) -> None:
        self.run, self.speed, self.requested, self.save, self.fell_back = run, speed, requested, save, fell_back
        self.left = TRIAL_STEPS if speed.compile != "none" else 0

    def step(self, body: Callable[[Speed], T]) -> T:
        """``body(speed)``: one training step under this trial's speed settings."""
        if not self.left:
            return body(self.speed)
        before = snapshot(self.run)
        try:
            out = body(self.speed)
        except Exception as exc:
            if is_out_of_memory(exc):
                raise
            return self._eagerly(body, before, exc)
        self.left -= 1
        return out

    def _eagerly(self, body: Callable[[Speed], T], before: dict[str, Any], exc: Exception) -> T:
        rollback(self.run, before)
        self.left, compiled_as, speed = 0, self.speed.compile, replace(self.speed, compile="none")
        slow_down(self.run)
        out = body(speed)  # the run's own error, if it is one, is raised here unchanged
        said = innermost_line(exc)
        if self.requested != "auto":
            rollback(self.run, before)
            saved = self.save(self.run, "keep") if self.run.step > 0 else None
            kept = (
                f"The state after step {self.run.step}, the last completed one, is saved as {saved}."
                if saved is not None
                else "No step had been completed; the checkpoints in the run folder are untouched."
            )
            raise CompileFailed(
                f"train.compile={self.requested} failed at step {self.run.step + 1} ({said}), which runs eagerly "
                f"without error: torch.compile does not work on this machine as set up. {kept} Run the same "
                f"command with train.compile=none (eager), or train.compile=auto (falls back to eager by itself); "
                f"TORCH_LOGS=+dynamo,+inductor shows the compiler's side."
            ) from exc
        self.speed = speed
        if self.fell_back is not None:
            self.fell_back(speed, f"compile={compiled_as} failed at step {self.run.step} ({said})")
        if distributed.current().is_main:
            print(f"note: train.compile=auto chose compile={compiled_as}, which failed at step {self.run.step} "
                  f"({said}); that step ran again eagerly from the same state and training goes on eagerly "
                  f"(slower, same mathematics). Set train.compile=none to skip the attempt.",
                  file=sys.stderr)  # fmt: skip
        return out


def innermost_line(exc: BaseException) -> str:
    """The error in a line: the innermost cause's type and first line (torch.compile wraps the backend's
    error in ``BackendCompilerFailed``, whose own first line only names the backend)."""
    inner = exc
    while (nxt := getattr(inner, "inner_exception", None) or inner.__cause__) is not None:
        inner = nxt
    said = first_line(inner)
    said = f"{type(inner).__name__}: {said}" if str(inner).strip() else said
    return said if inner is exc else f"{type(exc).__name__}, {said}"


def slow_down(run: Run) -> None:
    """Undo ``accelerate``: the updates call the DistributedDataParallel wrappers or the modules again."""
    run.g_update = getattr(run.g_update, "_orig_mod", run.g_update) if run.g_update is not None else None
    run.d_update = getattr(run.d_update, "_orig_mod", run.d_update) if run.d_update is not None else None
    if run.g_update is run.generator:
        run.g_update = None
    if run.d_update is run.discriminator:
        run.d_update = None
    run.g_read = run.d_read = None
