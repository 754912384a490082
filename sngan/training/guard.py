"""What ``on_nonfinite=stop`` puts back when a step fails: only what a failed step can change.

A step's updates land on the device as they come, and their finite flags are read once, at its end
(``iteration.settle``: the step's one wait for the device). Under ``on_nonfinite=stop`` the G update is gated
on every D update of its step being finite (``step.g_step``'s ``gate``, checked on the device), and a
non-finite G update is itself not applied; the EMA moves only after a step passed. So a failed step leaves
G's weights, G's optimizer and the EMA as they were. What it can change:

- D's weights and buffers (spectral norm's u and v), and D's optimizer (a finite D update before or after
  the failed one); G's optimizer only in its first step, where Adam creates its (zero) moments even for an
  update it skips;
- G's buffers: BatchNorm's running statistics move in every forward pass in train mode, the D updates' too;
- the data order, the RNGs and the augmentation's state (host values and small tensors).

``StepGuard.keep`` copies the tensors among these into buffers allocated once (one fused
``torch._foreach_copy_``, no host wait); ``put_back`` copies them back. ``state.snapshot`` (everything, fresh
copies) stays for the compile trial, whose failure can come at any point of a step.
"""

from __future__ import annotations

from typing import Any

import torch

from sngan.training.state import Run
from sngan.utils import checkpoint as ckpt


class StepGuard:
    """Keeps what a failed step can change (above), into buffers allocated at the first ``keep`` (and again
    only when the set of tensors changes: D's optimizer creates its moments at its first step)."""

    def __init__(self, run: Run) -> None:
        self.run = run
        self.kept: list[torch.Tensor] = []
        self.host: dict[str, Any] = {}
        self.states: tuple[set[Any], set[Any]] = (set(), set())  # the parameters D's and G's optimizers had state for

    def live(self) -> list[torch.Tensor]:
        """The tensors a failed step can change, in a fixed order."""
        run = self.run
        tensors = [*run.discriminator.parameters(), *run.discriminator.buffers(), *run.generator.buffers()]
        for state in run.opt_d.state.values():
            tensors += [value for value in state.values() if isinstance(value, torch.Tensor)]
        return tensors

    def keep(self) -> None:
        """Before a step."""
        live = self.live()
        if [(t.shape, t.dtype, t.device) for t in live] != [(t.shape, t.dtype, t.device) for t in self.kept]:
            self.kept = [torch.empty_like(t) for t in live]
        with torch.no_grad():
            torch._foreach_copy_(self.kept, live)
        run = self.run
        self.states = (set(run.opt_d.state), set(run.opt_g.state))
        sampler = run.sampler
        self.host = {  # the permutation is replaced at each epoch, never changed in place: a reference will do
            "sampler": (sampler.perm, sampler.pos, sampler.gen.get_state()),
            "rng": ckpt.rng_state(),
            "step": run.step,
            "augment": run.augment.state_dict(run.augment.p.device) if run.augment is not None else None,
        }

    def put_back(self) -> None:
        """After a failed step: the state ``keep`` saw."""
        run = self.run
        for opt, had in zip((run.opt_d, run.opt_g), self.states):
            for param in [p for p in opt.state if p not in had]:  # Adam makes a parameter's (zero) moments at its
                del opt.state[param]  # first step, even one it skips: the failed step was that first step
        with torch.no_grad():
            torch._foreach_copy_(self.live(), self.kept)
        perm, pos, gen = self.host["sampler"]
        run.sampler.perm, run.sampler.pos = perm, pos
        run.sampler.gen.set_state(gen)
        ckpt.set_rng_state(self.host["rng"])
        run.step = self.host["step"]
        if run.augment is not None and self.host["augment"] is not None:
            run.augment.load_state_dict(self.host["augment"])

    def size(self) -> tuple[int, int]:
        """(tensors copied, bytes) a step's ``keep`` copies."""
        return len(self.kept), sum(t.numel() * t.element_size() for t in self.kept)
