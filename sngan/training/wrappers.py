"""What the updates call: DistributedDataParallel wrappers under torchrun, torch.compile'd modules
under train.compile. The plain modules stay as they are for sampling, monitoring, evaluation and
checkpoints; ``Run`` keeps the wrappers beside them."""

from __future__ import annotations

import torch
from torch.nn.parallel import DistributedDataParallel

from sngan.config import TrainConfig
from sngan.training.distributed import Dist
from sngan.training.speed import Speed, compiled
from sngan.training.state import Run


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
    g_read, d_read = compiled(run.generator, speed.compile), compiled(run.discriminator, speed.compile)
    run.g_update = compiled(run.g_update, speed.compile) if run.g_update is not None else g_read
    run.d_update = compiled(run.d_update, speed.compile) if run.d_update is not None else d_read
    run.g_read, run.d_read = g_read, d_read
