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

from sngan.models.sampling import sample_y, sample_z
from sngan.training.iteration import Iteration
from sngan.training.speed import Speed, autocast, compiled
from sngan.training.state import Run, rollback, snapshot
from sngan.training.step import call
from sngan.utils import distributed
from sngan.utils.distributed import Dist
from sngan.utils.memory import first_line, is_out_of_memory

T = TypeVar("T")


def distribute(run: Run, sync_bn: bool, device: torch.device, here: Dist) -> None:
    """Wrap G and D in DistributedDataParallel (which starts every rank from rank 0's weights and
    buffers, spectral-norm u and v included, and keeps the buffers in step at every forward)."""
    if not here.enabled:
        return
    if sync_bn:  # the converted layers keep G's parameters: the optimizer needs no rebuilding
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


class CudaContextLost(RuntimeError):
    """A CUDA error that leaves the process's CUDA context unusable (an illegal memory access ...)."""


# CUDA's "sticky" errors: after one, every CUDA call of the process fails, so an eager retry fails again and
# its message blames the run's code. The phrases are the CUDA runtime's own (cudaGetErrorString), read on the
# line that says "CUDA error:" (torch adds lines to every CUDA error, one naming device-side assertions);
# cuBLAS's and NCCL's reports of a failed kernel are sticky too.
STICKY_CUDA_ERRORS = (
    "illegal memory access", "unspecified launch failure", "device-side assert triggered", "misaligned address",
    "illegal instruction", "invalid program counter", "hardware stack error", "uncorrectable ecc error",
    "launch timed out", "invalid address space",
)  # fmt: skip
STICKY_LIBRARY_ERRORS = ("cublas_status_execution_failed", "unhandled cuda error")


def poisons_the_context(exc: BaseException) -> bool:
    """Whether ``exc`` (or an exception it wraps: torch.compile's, the CUDA-graph tree's) is a sticky CUDA error.
    Out-of-memory errors are not (the caller's own handling)."""
    seen: BaseException | None = exc
    while seen is not None:
        for line in str(seen).lower().splitlines():
            said = line.partition("cuda error:")[2]
            if any(words in said for words in STICKY_CUDA_ERRORS) or any(w in line for w in STICKY_LIBRARY_ERRORS):
                return True
        seen = getattr(seen, "inner_exception", None) or seen.__cause__ or seen.__context__
    return False


def context_lost(step: int, compile: str, exc: BaseException) -> CudaContextLost:
    return CudaContextLost(
        f"CUDA failed in step {step} (train.compile={compile}): {innermost_line(exc)}. This error leaves the "
        f"process's CUDA context unusable, so the step is not tried again eagerly (it would fail the same way) "
        f"and nothing more can be read from the GPU; the checkpoints already in the run folder are intact and "
        f"resume=auto continues from the newest. To tell a compiler bug from a driver or hardware fault, run "
        f"the same command once with train.compile=none and CUDA_LAUNCH_BLOCKING=1. For a bug report send this "
        f"message, that run's train.log, and the output of `python -m torch.utils.collect_env` and "
        f"`nvidia-smi -q`."
    )


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
        save: Callable[..., Path],
        fell_back: Callable[[Speed, str], None] | None = None,
    ) -> None:
        self.run, self.speed, self.requested, self.save, self.fell_back = run, speed, requested, save, fell_back
        self.left = TRIAL_STEPS if speed.compile != "none" else 0

    def step(self, body: Callable[[Speed], T]) -> T:
        """``body(speed)``: one training step under this trial's speed settings."""
        if not self.left:
            try:
                return body(self.speed)
            except Exception as exc:
                if not is_out_of_memory(exc) and poisons_the_context(exc):
                    raise context_lost(self.run.step + 1, self.speed.compile, exc) from exc
                raise
        before = snapshot(self.run)
        failure: Exception | None = None
        try:
            out = body(self.speed)
        except Exception as exc:
            if is_out_of_memory(exc):
                raise
            if poisons_the_context(exc):  # not retried: the eager step would fail too, blaming the run's code
                raise context_lost(self.run.step + 1, self.speed.compile, exc) from exc
            failure = exc
            rollback(self.run, before)  # this rank's step again, eagerly, from the same state (its collectives
            slow_down(self.run)  # pair with the other ranks' in the step); the run's own error is raised here
            out = body(replace(self.speed, compile="none"))
        # Under torchrun every rank learns which failed (one exchange per trial step), so that all go on eagerly
        # together, or all stop together: a rank left compiled beside an eager one would train other numerics
        # than the provenance says, and a rank that stops alone leaves the others waiting in a collective.
        failed = distributed.gather_failures(innermost_line(failure) if failure is not None else None)
        if not failed:
            self.left -= 1
            return out
        return self._eagerly(out, before, failed, failure, f"at step {self.run.step}")

    def preflight(self, probe: Callable[[], None]) -> None:
        """Under torchrun, before the first step: ``probe()`` compiles and runs, on every rank, the compiled
        networks that take part in no collective (``probe_compiled``), and the ranks agree on what failed.
        A rank whose compiler is broken fails there, where the others wait for nothing, instead of inside a
        step whose collectives its eager retry would have to pair with the others' compiled ones."""
        if not self.left or not distributed.current().enabled:
            return
        failure: Exception | None = None
        try:
            probe()
        except Exception as exc:
            if is_out_of_memory(exc):
                raise
            if poisons_the_context(exc):
                raise context_lost(self.run.step + 1, self.speed.compile, exc) from exc
            failure = exc
        failed = distributed.gather_failures(innermost_line(failure) if failure is not None else None)
        if failed:
            self._eagerly(None, None, failed, failure, f"in its trial before step {self.run.step + 1}")

    def _eagerly(
        self, out: T, before: dict[str, Any] | None, failed: list[tuple[int, str]], exc: Exception | None, when: str
    ) -> T:
        """Every rank: on eagerly (compile=auto), or back to ``before``, saved, and stopped with CompileFailed."""
        self.left, compiled_as, speed = 0, self.speed.compile, replace(self.speed, compile="none")
        slow_down(self.run)
        said = "; ".join(f"rank {rank}: {line}" if distributed.current().enabled else line for rank, line in failed)
        if self.requested != "auto":
            if before is not None:
                rollback(self.run, before)
            saved = self.save(self.run, keep=True) if self.run.step > 0 and before is not None else None  # every rank
            kept = (
                f"The state after step {self.run.step}, the last completed one, is saved as {saved}."
                if saved is not None
                else "No step had been completed; the checkpoints in the run folder are untouched."
            )
            raise CompileFailed(
                f"train.compile={self.requested} failed {when} ({said}), which runs eagerly "
                f"without error: torch.compile does not work on this machine as set up. {kept} Run the same "
                f"command with train.compile=none (eager), or train.compile=auto (falls back to eager by itself); "
                f"TORCH_LOGS=+dynamo,+inductor shows the compiler's side."
            ) from exc
        self.speed = speed
        if self.fell_back is not None:
            self.fell_back(speed, f"compile={compiled_as} failed {when} ({said})")
        if distributed.current().is_main:
            every = " on every rank" if distributed.current().enabled else ""
            again = "that step ran again eagerly from the same state and " if before is not None else ""
            print(f"note: train.compile=auto chose compile={compiled_as}, which failed {when} "
                  f"({said}); {again}training goes on eagerly{every} "
                  f"(slower, same mathematics). Set train.compile=none to skip the attempt.",
                  file=sys.stderr)  # fmt: skip
        return out


def probe_compiled(run: Run, it: Iteration, speed: Speed) -> None:
    """The compiled networks no collective runs through, compiled and run once on the shapes training gives
    them: G as the D update reads it (no gradient, this rank's share of a D batch) and D as the G update
    reads it (eval mode unless ``batch_stats``, the gradient to its input). The state is put back after."""
    here, batch_stats = distributed.current(), it.rules.batch_stats
    device, classes = run.fixed_z.device, len(run.classes) if run.classes else 0
    lo, hi = distributed.shard(it.batch_size_d, here.rank, here.world)
    n_d, n_g = hi - lo, it.batch_size_g // here.world
    g, d = run.g_read, run.d_read
    if g is None or d is None:
        return
    before = snapshot(run)
    try:
        with autocast(speed, device):
            with torch.no_grad():
                fake = call(g, sample_z(n_d, it.z_dim, device), sample_y(n_d, classes, device, run.fake_cdf))
            layout = torch.channels_last if fake.dim() == 4 and not fake.is_contiguous() else torch.contiguous_format
            x = torch.randn((n_g, *fake.shape[1:]), device=device, dtype=fake.dtype).contiguous(memory_format=layout)
            if not batch_stats:
                run.discriminator.eval()
            run.discriminator.requires_grad_(False)
            out = call(d, x.requires_grad_(True), sample_y(n_g, classes, device, run.fake_cdf)).float()
        out.mean().backward()
    finally:
        run.discriminator.requires_grad_(True)
        run.discriminator.train()
        rollback(run, before)


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
