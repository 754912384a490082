"""``torchrun ... tests/ddp_faults.py <overrides>``: ``python -m sngan.train`` with a fault a GPU could meet,
chosen by ``FAULT`` (this test helper's own variable; the product reads no test hooks):

- ``oom``: rank 1's second Inception feature pass (its share of the first evaluation's fakes) runs out of
  memory;
- ``compile``: torch.compile's backend raises when it compiles (a broken inductor or Triton), on every rank,
  and ``train.compile=auto`` resolves to compile=default as it does on GPUs under torchrun;
- ``compile_rank1``: the same on rank 1 only (one host's broken toolchain); rank 0 compiles;
- ``compile_rank1_d``: on rank 1 only, and only D's graphs (those whose input is a batch of images): without
  the trial before the first step, rank 1 would first fail inside the D update, after DDP's collectives began.
"""

from __future__ import annotations

import os

import torch

from sngan import train
from sngan.cli import build
from sngan.metrics import inception, scoring
from sngan.training import speed, wrappers

inception.INPUT_SIZE = 75  # as the suite's own process: no test of a fault compares numbers with 299x299 ones
fault = os.environ["FAULT"]
if fault == "oom":
    real_extract, calls = scoring.extract, []

    def extract(*args, **kwargs):
        calls.append(1)
        if os.environ["RANK"] == "1" and len(calls) == 2:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 7.00 GiB.")
        return real_extract(*args, **kwargs)

    scoring.extract = extract
elif fault in ("compile", "compile_rank1", "compile_rank1_d"):

    def backend(gm, example_inputs):
        images = any(isinstance(x, torch.Tensor) and x.dim() == 4 and x.shape[1] == 3 for x in example_inputs)
        if fault == "compile" or (os.environ["RANK"] == "1" and (fault == "compile_rank1" or images)):
            raise RuntimeError("Triton: no usable C compiler for this GPU")
        return gm.forward

    real_resolve = build.resolve
    speed.compiler_for = lambda device: True  # the backend needs no compiler
    wrappers.compiled = lambda net, mode: net if mode == "none" else torch.compile(net, backend=backend)
    build.resolve = lambda device, precision, tf32, compile, *rest: real_resolve(
        device, precision, tf32, "default" if compile == "auto" else compile, *rest
    )
train.launch()
