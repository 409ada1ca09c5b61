"""Batches of a user's Dataset through a real `torch.utils.data.DataLoader`, seeded so that a run
repeats bit for bit whatever `num_workers` is, and resumes mid-epoch without loading what it skips.

The seeding, exactly (the README repeats it so that a hand-written loop can reproduce a run):
- Epoch order: `SeededBatchSampler` draws `torch.randperm(len(dataset), generator=order)` at the start
  of every epoch from one CPU generator, `torch.Generator().manual_seed(derive_seed(seed, "shuffle"))`:
  the same order as optcli's in-memory path draws.
- Sample randomness (augmentations): before fetching batch `i` of epoch `e`, the process that fetches
  it (the main process or a worker) seeds torch's CPU generator, Python's `random` and NumPy's global
  generator from `derive_seed(seed, f"batch:{e}:{i}")` (NumPy takes it modulo 2**32). In the main
  process the generators are put back afterwards, so the data never disturbs the training's own
  randomness (dropout, say). (A Dataset that draws on a GPU's generator is not seeded per batch.) Which worker fetches a batch no longer matters, hence `num_workers: 0`
  and `num_workers: 2` give the same batches, and a resumed epoch can skip batches without loading them.
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from optcli.data.batches import batches_per_epoch, global_batch_size, shard_bounds
from optcli.seeds import DATA_ORDER, LOADER_WORKERS, batch_purpose, derive_seed

Batch = Any  # an (inputs, targets) pair of tensors, or a dict of tensors (a Hugging Face style batch)


def batch_seed(seed: int, epoch: int, index: int, part: int | None = None) -> int:
    """The seed of every generator while batch `index` of epoch `epoch` is fetched (or `part` of it,
    when processes share the batch)."""
    return derive_seed(seed, batch_purpose(epoch, index, part))


@contextlib.contextmanager
def seeded_random(seed: int) -> Iterator[None]:
    """Seed torch's CPU generator, `random` and NumPy for what runs inside. In the main process their
    states are put back after (the training draws from them too); a worker's are not (nothing else
    draws from them, and saving NumPy's state alone would cost 70 µs a batch)."""
    if torch.utils.data.get_worker_info() is not None:
        _seed_generators(seed)
        yield
        return
    saved = torch.get_rng_state(), random.getstate(), numpy.random.get_state()
    _seed_generators(seed)
    try:
        yield
    finally:
        torch.set_rng_state(saved[0])
        random.setstate(saved[1])
        numpy.random.set_state(saved[2])


def _seed_generators(seed: int) -> None:
    # torch's CPU generator only: torch.manual_seed would seed every accelerator too, at 90 µs a call.
    torch.default_generator.manual_seed(seed)
    random.seed(seed)
    numpy.random.seed(seed % 2**32)


class SeededBatchSampler(Sampler[tuple[int, list[int]]]):
    """Yields `(seed, indices)` per batch: a seeded order each epoch (see the module's docstring).

    `set_epoch(e)` names the epoch the next iteration draws (it decides the batch seeds), and `skip`
    leaves out the next iteration's first batches (resuming mid-epoch); the order is drawn whole first,
    so the batches after the skipped ones are those of the uninterrupted epoch.
    """

    def __init__(
        self,
        samples: int,
        batch_size: int,
        *,
        shuffle: bool,
        drop_last: bool,
        seed: int,
        order: torch.Generator,
        shard: tuple[int, int] = (0, 1),
    ) -> None:
        self.samples, self.batch_size, self.shuffle, self.drop_last = samples, batch_size, shuffle, drop_last
        self.shard = shard  # (this process's rank, processes): each takes its part of every batch
        self.seed = seed
        self.generator = order
        self.epoch_order_state = order.get_state()  # the state that drew the current epoch's order
        self.epoch = 0
        self.skip = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return batches_per_epoch(self.samples, self.batch_size, self.drop_last)

    def __iter__(self) -> Iterator[tuple[int, list[int]]]:
        skip, self.skip = self.skip, 0
        if self.shuffle:
            self.epoch_order_state = self.generator.get_state()
            order = torch.randperm(self.samples, generator=self.generator).tolist()
        else:
            order = list(range(self.samples))
        rank, parts = self.shard
        for index in range(skip, len(self)):
            offset, length = shard_bounds(self.global_size(index), parts, rank)
            start = index * self.batch_size + offset
            # Split among processes, each part of a batch is seeded apart (and so draws its own samples'
            # augmentations): a run repeats itself at any `parts`, but differs from one process there.
            seed = batch_seed(self.seed, self.epoch, index, rank if parts > 1 else None)
            yield seed, order[start : start + length]

    def global_size(self, index: int) -> int:
        return global_batch_size(self.samples, self.batch_size, index)


class SeededSamples(Dataset[Any]):
    """The user's Dataset, fetched a batch at a time with every generator seeded for that batch."""

    def __init__(self, dataset: Any) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> Any:
        return self.dataset[index]

    def __getitems__(self, seeded: tuple[int, list[int]]) -> list[Any]:
        seed, indices = seeded
        with seeded_random(seed):
            own = getattr(self.dataset, "__getitems__", None)
            return list(own(indices)) if callable(own) else [self.dataset[index] for index in indices]


def make_loader(
    dataset: Any,
    batch_size: int,
    *,
    seed: int,
    shuffle: bool = True,
    drop_last: bool = False,
    collate_fn: Callable[[list[Any]], Batch] | None = None,
    num_workers: int = 0,
    pin_memory: bool = False,
    persistent_workers: bool = False,
    prefetch_factor: int | None = None,
    shard: tuple[int, int] = (0, 1),
) -> DataLoader[Any]:
    """The DataLoader optcli trains from (public: a hand-written loop can iterate the same one).

    Call `loader.batch_sampler.set_epoch(e)` before epoch `e` (counted from 1, as optcli counts).
    """
    sampler = SeededBatchSampler(
        len(dataset),
        batch_size,
        shuffle=shuffle,
        drop_last=drop_last,
        seed=seed,
        order=torch.Generator().manual_seed(derive_seed(seed, DATA_ORDER)),
        shard=shard,
    )
    return DataLoader(
        SeededSamples(dataset),
        batch_sampler=sampler,  # type: ignore[arg-type]  # yields (seed, indices), read by SeededSamples
        collate_fn=collate_fn,
        num_workers=num_workers,
        pin_memory=pin_memory,
        persistent_workers=persistent_workers and num_workers > 0,
        prefetch_factor=prefetch_factor if num_workers > 0 else None,
        # The workers' base seed is drawn from this generator, not from torch's global one, which a
        # hand-written loop would not expect to move (every batch is seeded anyway).
        generator=torch.Generator().manual_seed(derive_seed(seed, LOADER_WORKERS)),
    )


def move_batch(
    batch: Batch, device: torch.device, binary_labels: bool = False, column: bool = False
) -> Batch:
    """A batch on the run's device (asynchronously from pinned memory), its targets shaped as the
    in-memory path shapes them: 0/1 labels made float logits' targets for a binary loss, and one real
    value per sample made a column (`column`), both (batch, 1) like the model's output."""
    if isinstance(batch, dict):
        return {key: _move(value, device) for key, value in batch.items()}
    inputs, targets = (_move(part, device) for part in batch)
    if binary_labels:
        targets = targets.to(torch.get_default_dtype()).unsqueeze(1)
    elif column:
        targets = targets.unsqueeze(1)
    return inputs, targets


def _move(value: Any, device: torch.device) -> Any:
    return value.to(device, non_blocking=True) if isinstance(value, torch.Tensor) else value


def batch_length(batch: Batch) -> int:
    """How many samples a batch holds: the length of its first tensor."""
    parts: Sequence[Any] = list(batch.values()) if isinstance(batch, dict) else batch
    return next(len(part) for part in parts if isinstance(part, torch.Tensor))


class LoaderBatches:
    """The DataLoader path's batches, with the in-memory path's interface (`epoch`, `generator`,
    `epoch_order_state`, `samples`, `len`): the loop cannot tell them apart."""

    def __init__(
        self, loader: DataLoader[Any], device: torch.device, binary_labels: bool = False, column: bool = False
    ) -> None:
        self.loader = loader
        self.sampler: SeededBatchSampler = loader.batch_sampler  # type: ignore[assignment]
        self.device = device
        self.binary_labels, self.column = binary_labels, column
        self.generator = self.sampler.generator

    @property
    def epoch_order_state(self) -> torch.Tensor:
        return self.sampler.epoch_order_state

    @property
    def samples(self) -> int:
        return self.sampler.samples

    def __len__(self) -> int:
        return len(self.sampler)

    def global_size(self, index: int) -> int:
        return self.sampler.global_size(index)

    def epoch(self, skip: int = 0, number: int = 1) -> Iterator[Batch]:
        self.sampler.set_epoch(number)
        self.sampler.skip = skip
        if self.device.type == "cpu" and not self.binary_labels and not self.column:
            yield from self.loader  # already where and as the loop wants them
            return
        for batch in self.loader:
            yield move_batch(batch, self.device, self.binary_labels, self.column)
