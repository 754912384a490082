"""Batches drawn from the training images. ``BatchSampler``'s whole state (permutation, position,
generator) goes into checkpoints, so a resumed run continues the data order where it stopped. On a
GPU the uint8 images can live on the device (``BatchSampler.place``): a batch is then gathered,
flipped and converted there, with no host work but drawing 64 indices."""

from __future__ import annotations

from typing import Any

import torch

from sngan.data.dataset import to_float
from sngan.utils.distributed import shard


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
        self.uploads = PinnedUploads()

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
        sampler's generator, wherever the images are: the data order does not depend on placement.

        Indices and flips travel as one tensor (index * 2 + flip); to a CUDA device every host tensor goes
        through pinned buffers reused in turn (``PinnedUploads``), so no upload waits for the GPU."""
        index = self.next_indices(batch)
        flip = torch.rand(batch, generator=self.gen) < 0.5 if self.hflip else None
        lo, hi = shard(batch, self.rank, self.world)
        packed = index[lo:hi] * 2 + (flip[lo:hi] if flip is not None else 0)
        packed = self.uploads.to(packed, self.images.device)
        mine = packed >> 1
        x = to_float(self.uploads.to(self.images[mine], device))
        if flip is not None:
            flips = self.uploads.to((packed & 1).bool(), device)
            x = torch.where(flips[:, None, None, None], x.flip(3), x)
        return x, None if self.labels is None else self.uploads.to(self.labels[mine], device)

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


class PinnedUploads:
    """Host-to-GPU copies of small host tensors through page-locked buffers, reused in turn: a
    ``non_blocking`` copy from ordinary (pageable) memory may wait for the GPU, and the training loop
    makes several a step. Before a buffer is refilled, the event recorded after its last copy says that
    copy is done (``SLOTS`` copies later it always is, unless the GPU is that far behind). Anything not
    bound from the host to a CUDA device is moved as ``Tensor.to`` moves it."""

    SLOTS = 8

    def __init__(self) -> None:
        self.buffers: dict[tuple[int, torch.dtype], torch.Tensor] = {}
        self.done: list[torch.cuda.Event | None] = [None] * self.SLOTS
        self.turn = 0

    def to(self, host: torch.Tensor, device: torch.device) -> torch.Tensor:
        if device.type != "cuda" or host.device.type != "cpu":
            return host.to(device, non_blocking=True)
        slot, self.turn = self.turn, (self.turn + 1) % self.SLOTS
        if (event := self.done[slot]) is not None:
            event.synchronize()
        buffer = self.buffers.get((slot, host.dtype))
        if buffer is None or buffer.numel() < host.numel():
            buffer = self.buffers[slot, host.dtype] = torch.empty(host.numel(), dtype=host.dtype, pin_memory=True)
        staged = buffer[: host.numel()].view(host.shape)
        staged.copy_(host)
        moved = staged.to(device, non_blocking=True)
        self.done[slot] = torch.cuda.Event()
        self.done[slot].record()  # type: ignore[union-attr]
        return moved
