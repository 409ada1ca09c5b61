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


def global_batch_size(samples: int, batch_size: int, index: int) -> int:
    """The samples of batch `index` of an epoch (over every process): the last may be short."""
    return min(batch_size, samples - index * batch_size)


def shard_bounds(count: int, parts: int, index: int) -> tuple[int, int]:
    """Part `index` of `count` samples split into `parts` contiguous parts (as torch.tensor_split
    splits them: the first `count % parts` parts have one more): its offset and length."""
    base, extra = divmod(count, parts)
    return index * base + min(index, extra), base + (index < extra)


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

    def global_size(self, index: int) -> int: ...  # the samples of global batch `index`, over every process


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
        shard: tuple[int, int] = (0, 1),
    ) -> None:
        self.device = device
        self.shard = shard  # (this process's rank, processes): each takes its part of every batch
        self.inputs = data.inputs.to(device)
        self.targets = data.targets.to(device)
        self.widen = data.tokens  # compact token ids become int64 a batch at a time
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

    def global_size(self, index: int) -> int:
        return global_batch_size(self.samples, self.batch_size, index)

    def epoch(self, skip: int = 0, number: int = 1) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """One epoch's batches (this process's part of each); `skip` leaves out its first batches
        (resuming in the middle of one). (`number`, the epoch's, only matters to a DataLoader's seeds.)"""
        if self.shuffle:
            self.epoch_order_state = self.generator.get_state()
            order = torch.randperm(self.samples, generator=self.generator).to(self.device, non_blocking=True)
        for index in range(skip, len(self)):
            offset, length = shard_bounds(self.global_size(index), self.shard[1], self.shard[0])
            start = index * self.batch_size + offset
            if not self.shuffle:  # slices are views: no copy at all
                inputs, targets = self.inputs[start : start + length], self.targets[start : start + length]
            else:
                indices = order[start : start + length]
                inputs, targets = self.inputs.index_select(0, indices), self.targets.index_select(0, indices)
            yield (inputs.long(), targets.long()) if self.widen else (inputs, targets)
