"""Batches drawn from the training images. ``BatchSampler``'s whole state (permutation, position,
generator) goes into checkpoints, so a resumed run continues the data order where it stopped. On a
GPU the uint8 images can live on the device (``BatchSampler.place``): a batch is then gathered,
flipped and converted there, with no host work but drawing 64 indices."""

from __future__ import annotations

from typing import Any

import torch

from sngan.data.dataset import to_float
from sngan.training.distributed import shard


class BatchSampler:
    """Draws batches without replacement, reshuffling each epoch, from a
    private ``torch.Generator``; ``state_dict`` captures all of it.

    Under torchrun every rank holds the same sampler state and draws the same global batch, then keeps
    its own slice (``rank`` of ``world``): the data order does not depend on the number of ranks."""

    def __init__(
        self,
        images: torch.Tensor,
        seed: int,
        hflip: bool = False,
        rank: int = 0,
        world: int = 1,
        labels: torch.Tensor | None = None,
    ) -> None:
        self.images, self.hflip, self.rank, self.world, self.labels = images, hflip, rank, world, labels
        self.gen = torch.Generator().manual_seed(seed)
        self.perm = torch.randperm(len(images), generator=self.gen)
        self.pos = 0

    def next_indices(self, batch: int) -> torch.Tensor:
        taken = []
        while batch > 0:
            if self.pos >= len(self.perm):
                self.perm, self.pos = torch.randperm(len(self.images), generator=self.gen), 0
            chunk = self.perm[self.pos : self.pos + batch]
            taken.append(chunk)
            self.pos += len(chunk)
            batch -= len(chunk)
        return torch.cat(taken)

    def place(self, device: torch.device) -> None:
        """Hold the uint8 images (and labels) on ``device``: batches are then gathered and converted there."""
        if device.type == "cpu":
            return
        self.images = self.images.to(device)
        self.labels = self.labels.to(device) if self.labels is not None else None

    def next(self, batch: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor | None]:
        """This rank's share of a global batch of ``batch`` images, as floats in [-1, 1] on ``device``,
        and their labels (None without labels). The draw (indices, flips) is made on the host from the
        sampler's generator, wherever the images are: the data order does not depend on placement."""
        index = self.next_indices(batch)
        flip = torch.rand(batch, generator=self.gen) < 0.5 if self.hflip else None
        lo, hi = shard(batch, self.rank, self.world)
        mine = index[lo:hi].to(self.images.device, non_blocking=True)
        x = to_float(self.images[mine].to(device, non_blocking=True))
        if flip is not None:
            x = torch.where(flip[lo:hi, None, None, None].to(device, non_blocking=True), x.flip(3), x)
        return x, None if self.labels is None else self.labels[mine].to(device, non_blocking=True)

    def state_dict(self) -> dict[str, Any]:
        return {"perm": self.perm.clone(), "pos": self.pos, "generator": self.gen.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if len(state["perm"]) != len(self.images):
            raise ValueError(
                f"the checkpoint's data order covers {len(state['perm'])} images but the dataset has "
                f"{len(self.images)}: resume with the dataset the run was started with"
            )
        self.perm, self.pos = state["perm"].clone(), int(state["pos"])
        self.gen.set_state(state["generator"])
