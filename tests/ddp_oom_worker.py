"""``torchrun ... tests/ddp_oom_worker.py <overrides>``: ``python -m sngan.train`` with rank 1's second Inception
feature pass (its share of the first evaluation's fakes) running out of memory, as a GPU would."""

from __future__ import annotations

import os

import torch

from sngan.metrics import scoring
from sngan.train import launch

real, calls = scoring.extract, []


def extract(*args, **kwargs):
    calls.append(1)
    if os.environ["RANK"] == "1" and len(calls) == 2:
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 7.00 GiB.")
    return real(*args, **kwargs)


scoring.extract = extract
launch()
