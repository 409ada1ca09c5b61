"""Batches from tensors that already sit on the device: indexing whole tensors, no per-sample collation."""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any, Protocol

import torch

from optcli.data.in_memory import TensorData


def batches_per_epoch(samples: int, batch_size: int, drop_last: bool) -> int:
    """How many batches an epoch has: a short last batch counts unless it is dropped."""
    return samples // batch_size if drop_last else math.ceil(samples / batch_size)


class Batches(Protocol):
    """What the loop draws batches from: in-memory tensors, or a DataLoader (loader.py)."""

    device: torch.device
    generator: torch.Generator  # draws each epoch's order (CPU: the same order on every device)

    @property
    def epoch_order_state(self) -> torch.Tensor: ...  # the generator state that drew this epoch's order

    @property
    def samples(self) -> int: ...

    def __len__(self) -> int: ...

    def epoch(self, skip: int = 0, number: int = 1) -> Iterator[Any]: ...


class InMemoryBatches:
    """Yields (inputs, targets) for one epoch at a time, in a seeded order when shuffling."""

    def __init__(
        self,
        data: TensorData,
        batch_size: int,
        *,
        shuffle: bool,
        drop_last: bool,
        generator: torch.Generator,
        device: torch.device,
    ) -> None:
        self.device = device
        self.inputs = data.inputs.to(device)
        self.targets = data.targets.to(device)
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.generator = generator  # CPU generator: the same order on every device
        self.epoch_order_state = generator.get_state()  # the state that drew the current epoch's order

    @property
    def samples(self) -> int:
        return len(self.inputs)

    def __len__(self) -> int:
        return batches_per_epoch(self.samples, self.batch_size, self.drop_last)

    def epoch(self, skip: int = 0, number: int = 1) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """One epoch's batches; `skip` leaves out its first batches (resuming in the middle of one).
        (`number`, the epoch's, only matters to a DataLoader's batch seeds.)"""
        first = skip * self.batch_size
        if not self.shuffle:
            # Slices are views: no copy at all.
            for start in range(first, len(self) * self.batch_size, self.batch_size):
                yield (
                    self.inputs[start : start + self.batch_size],
                    self.targets[start : start + self.batch_size],
                )
            return
        self.epoch_order_state = self.generator.get_state()
        order = torch.randperm(self.samples, generator=self.generator).to(
            self.inputs.device, non_blocking=True
        )
        for start in range(first, len(self) * self.batch_size, self.batch_size):
            indices = order[start : start + self.batch_size]
            yield self.inputs.index_select(0, indices), self.targets.index_select(0, indices)
