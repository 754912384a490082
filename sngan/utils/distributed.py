"""Several processes, one run: what ``torchrun`` sets up, and the few collectives the trainer needs.

``torchrun --nproc-per-node=N -m sngan.train ...`` starts N copies of the trainer with RANK, WORLD_SIZE
and LOCAL_RANK in their environment. Each copy:

- draws the same global batch order (one shared sampler state) and takes its own slice of every
  batch, so the data order is the same for any world size and a run resumes at another one;
- draws its own noise (a per-rank seed), and trains G and D wrapped in DistributedDataParallel;
- agrees with the others, once per step, on whether to save and stop (a signal or the wall clock on
  any rank stops all of them at the same step);
- leaves files to rank 0 (TensorBoard, checkpoints, samples, metrics) after gathering what only
  the others know (their RNG states, their share of the FID features).

Without torchrun (WORLD_SIZE unset or 1) every function here is a no-op or the identity.
"""

from __future__ import annotations

import contextlib
import datetime
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import torch
import torch.distributed as dist

T = TypeVar("T")
STAMP_ENV = "SNGAN_RUN_STAMP"  # the run folder's time stamp, shared by all ranks (set before Hydra composes)
TIMEOUT_ENV = "SNGAN_DIST_TIMEOUT_MIN"


class RankFailed(RuntimeError):
    """Another rank failed at a step all ranks take together; its own message says why."""


@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def from_env() -> Dist:
    """This process's place in a ``torchrun`` launch (one process, rank 0, without one)."""
    env = os.environ
    return Dist(int(env.get("RANK", 0)), int(env.get("WORLD_SIZE", 1)), int(env.get("LOCAL_RANK", 0)))


def setup() -> Dist:
    """Join the process group of a torchrun launch (gloo on CPU, NCCL for CUDA tensors) and share rank
    0's time stamp, so all ranks name the same Hydra run folder. Call before Hydra composes the config."""
    here = from_env()
    if not here.enabled or dist.is_initialized():
        return here
    backend = "gloo"
    if torch.cuda.is_available():
        torch.cuda.set_device(here.local_rank % torch.cuda.device_count())
        backend = "cpu:gloo,cuda:nccl"
    minutes = float(os.environ.get(TIMEOUT_ENV, 30))
    dist.init_process_group(backend, timeout=datetime.timedelta(minutes=minutes))
    stamp = [datetime.datetime.now().strftime("%Y-%m-%d_%H-%M-%S") if here.is_main else None]
    dist.broadcast_object_list(stamp, src=0)
    os.environ[STAMP_ENV] = str(stamp[0])
    return here


def current() -> Dist:
    """The process group this process belongs to, if any."""
    if not (dist.is_available() and dist.is_initialized()):
        return Dist()
    return Dist(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0)))


def teardown(clean: bool = True) -> None:
    """Leave the process group. After a clean end every rank first waits for the others (at most a minute):
    a rank that destroys its group while another still talks to it can abort at exit ("terminate called
    without an active exception", seen once in the suite). After an error, leave at once."""
    if dist.is_available() and dist.is_initialized():
        if clean:
            with contextlib.suppress(Exception):  # a rank that is gone or stuck: leave anyway
                dist.monitored_barrier(timeout=datetime.timedelta(seconds=60))
        dist.destroy_process_group()


def rank_seed(seed: int, rank: int, step: int = 0) -> int:
    """Rank r's seed for its own noise: rank 0 of a new run keeps ``seed`` (a one-process run is
    unchanged); other ranks, and ranks joining a resumed run at ``step``, get streams of their own."""
    if rank == 0 and step == 0:
        return seed
    entropy = [seed % 2**64, rank, step]  # SeedSequence takes non-negative integers only
    return int(np.random.SeedSequence(entropy).generate_state(1, np.uint64)[0] >> 1)


def shard(n: int, rank: int, world: int) -> tuple[int, int]:
    """Rank ``rank``'s contiguous share [lo, hi) of n items; shares differ in size by at most one."""
    return n * rank // world, n * (rank + 1) // world


def broadcast(obj: T, src: int = 0) -> T:
    """``obj`` as rank ``src`` has it."""
    if not current().enabled:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def gather(obj: T) -> list[T] | None:
    """Every rank's ``obj`` in rank order on rank 0; None elsewhere."""
    here = current()
    if not here.enabled:
        return [obj]
    out: list[Any] | None = [None] * here.world if here.is_main else None
    dist.gather_object(obj, out, dst=0)
    return out


def max_over_ranks(values: list[int]) -> list[int]:
    """Element-wise maximum of small integers over all ranks (one all-reduce)."""
    if not current().enabled:
        return values
    t = torch.tensor(values, dtype=torch.int64)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)  # a CPU tensor: gloo, also beside NCCL
    return [int(v) for v in t]


def all_agree(flag: torch.Tensor) -> torch.Tensor:
    """True where ``flag`` is true on every rank (on the flag's own device)."""
    if not current().enabled:
        return flag
    t = flag.to(torch.int32)
    dist.all_reduce(t, op=dist.ReduceOp.MIN)
    return t.bool()


def gather_failures(said: str | None) -> list[tuple[int, str]]:
    """(rank, what failed) for every rank whose ``said`` is not None: one object all-gather under torchrun
    (every rank must call it), this process's own otherwise."""
    if not current().enabled:
        return [(0, said)] if said is not None else []
    everyone: list[str | None] = [None] * current().world
    dist.all_gather_object(everyone, said)
    return [(rank, line) for rank, line in enumerate(everyone) if line is not None]


def sum_over_ranks(values: torch.Tensor) -> torch.Tensor:
    """``values`` added over ranks (one all-reduce, on their own device); a copy."""
    t = values.detach().clone()
    if current().enabled:
        dist.all_reduce(t)
    return t


def mean_over_ranks(values: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Scalar tensors averaged over ranks (one all-reduce): what is logged is the global batch's value."""
    if not current().enabled or not values:
        return values
    keys = sorted(values)
    t = torch.stack([values[k].detach().float() for k in keys])
    dist.all_reduce(t)
    return dict(zip(keys, t / current().world, strict=True))


def sync_buffers(*modules: torch.nn.Module | None) -> None:
    """Give every rank rank 0's buffers of ``modules`` (G's BatchNorm running statistics, which each rank
    otherwise updates from its own fakes), so that evaluation and checkpoints see one generator."""
    if not current().enabled:
        return
    for module in modules:
        for buffer in module.buffers() if module is not None else ():
            dist.broadcast(buffer, src=0)


def main_first(fn: Callable[[], T], others: bool = True, per_node: bool = True) -> T | None:
    """Run ``fn`` on each node's first process (``per_node``; else on rank 0 only) first, e.g. a download
    or a cache file, then, if that worked everywhere, on the other ranks, which then find the file (or
    not at all there with ``others=False``: they get None). A failure anywhere is raised where it
    happened and stops every other rank with RankFailed instead of leaving it waiting."""
    here = current()
    if not here.enabled:
        return fn()
    leader = here.local_rank == 0 if per_node else here.is_main
    result = None
    for turn in (True, False):
        failed = None
        if leader == turn and (turn or others):
            try:
                result = fn()
            except BaseException as exc:
                failed = exc
        (anywhere,) = max_over_ranks([int(failed is not None)])
        if failed is not None:
            raise failed
        if anywhere:
            raise RankFailed("Another rank failed while preparing the run; its message says why and what to do.")
    return result
