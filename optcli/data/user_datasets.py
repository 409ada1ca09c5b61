"""A user's own Dataset, named by `data.name: "file.py:make_datasets"`: a map-style Dataset class, or a
function returning one Dataset or a mapping {train, val, test} of them (and, optionally, `collate_fn`).

Everything a config check needs is read here, before training: the callable runs, what it returns is
checked, and the first batch is collated, so a dataset that cannot work is a config error naming
`data`, not a crash at the first step. Batches then come from `loader.py`'s DataLoader.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils.data import IterableDataset, default_collate

from optcli.components.forward import TARGET_KEY
from optcli.data.in_memory import DataInfo
from optcli.data.loader import seeded_random
from optcli.errors import ConfigError

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class Datasets:
    train: Any
    val: Any | None
    test: Any | None
    collate_fn: Callable[[list[Any]], Any] | None  # None: PyTorch's default_collate


class UserDatasets:
    """The callable with its bound arguments; called once (lazily), its Datasets checked."""

    IS_USER_DATASET = True  # the DataLoader path; in-memory datasets have describe() and load()

    def __init__(self, factory: Callable[..., Any], arguments: dict[str, Any], name: str) -> None:
        self.factory, self.arguments, self.name = factory, arguments, name
        self._made: Datasets | None = None
        self._first_batches: dict[tuple[int, str], Any] = {}  # read once: the check and the run share them

    def datasets(self) -> Datasets:
        if self._made is None:
            self._made = self._make()
        return self._made

    def _make(self) -> Datasets:
        try:
            made = self.factory(**self.arguments)
        except ConfigError:
            raise
        except Exception as error:
            raise ConfigError(f"{self.name} failed: {type(error).__name__}: {error}") from None
        parts: dict[str, Any]
        if isinstance(made, Mapping):
            unknown = sorted(set(made) - {*SPLITS, "collate_fn"})
            if unknown or "train" not in made:
                raise ConfigError(
                    f"{self.name} returned a mapping with keys {sorted(made)}; it needs 'train' and may have "
                    f"'val', 'test' and 'collate_fn'"
                )
            parts = dict(made)
        else:
            parts = {"train": made}
        for split in SPLITS:
            if parts.get(split) is not None:
                _check_dataset(parts[split], split, self.name)
        collate = parts.get("collate_fn") or getattr(parts["train"], "collate_fn", None)
        if collate is not None and not callable(collate):
            raise ConfigError(f"{self.name}: its collate_fn is a {type(collate).__name__}, not a function")
        return Datasets(parts["train"], parts.get("val"), parts.get("test"), collate)

    def has_split(self, split: str) -> bool:
        return getattr(self.datasets(), split) is not None

    def first_batch(self, batch_size: int, split: str = "train") -> Any:
        """The split's first batch (unshuffled), collated as training will collate it."""
        if (batch_size, split) not in self._first_batches:
            self._first_batches[batch_size, split] = self._read_first_batch(batch_size, split)
        return self._first_batches[batch_size, split]

    def _read_first_batch(self, batch_size: int, split: str) -> Any:
        made = self.datasets()
        dataset = getattr(made, split)
        count = max(1, min(batch_size, len(dataset)))
        with seeded_random(0):  # a Dataset's augmentations leave the caller's generators as they were
            samples = [self._sample(dataset, index, split) for index in range(count)]
        try:
            return (made.collate_fn or default_collate)(samples)
        except Exception as error:
            raise ConfigError(
                f"{self.name}: the {split} samples cannot be collated into a batch: {type(error).__name__}: "
                f"{error}; give the Dataset (or the mapping) a collate_fn"
            ) from None

    def _sample(self, dataset: Any, index: int, split: str) -> Any:
        try:
            sample = dataset[index]
        except Exception as error:
            raise ConfigError(
                f"{self.name}: reading sample {index} of the {split} data failed: {type(error).__name__}: {error}"
            ) from None
        if index == 0:
            _check_sample(sample, split, self.name)
        return sample

    def describe(self) -> DataInfo:
        """The sizes and the kind of targets, read off the training data's first batch."""
        train = self.datasets().train
        batch = self.first_batch(2)
        if isinstance(batch, Mapping):
            targets = batch.get(TARGET_KEY)
            feature_shape: tuple[int, ...] = ()
        elif isinstance(batch, list | tuple) and len(batch) == 2:
            inputs, targets = batch
            feature_shape = tuple(inputs.shape[1:]) if isinstance(inputs, torch.Tensor) else ()
        else:
            raise ConfigError(
                f"{self.name}: a batch is a {type(batch).__name__}, not an (input, target) pair or a dict"
            )
        integers = isinstance(targets, torch.Tensor) and not targets.is_floating_point()
        rank = targets.dim() if isinstance(targets, torch.Tensor) else 0
        if integers and rank >= 2:  # a class per position: a language model's next tokens
            classes = _class_count(train) or int(getattr(train, "vocab_size", 0) or 0)
            return DataInfo(len(train), feature_shape, classes, sequence_length=int(targets.shape[1]))  # type: ignore[union-attr]
        labels = integers and rank == 1
        if not labels:
            shape = tuple(targets.shape[1:]) if isinstance(targets, torch.Tensor) else ()
            size = int(torch.Size(shape).numel()) if shape else 1
            column = (
                not isinstance(batch, Mapping) and isinstance(targets, torch.Tensor) and targets.dim() == 1
            )
            return DataInfo(
                len(train), feature_shape, None, size, target_shape=shape or None, target_column=column
            )
        return DataInfo(len(train), feature_shape, _class_count(train), class_names=_class_names(train))


def _check_dataset(dataset: Any, split: str, name: str) -> None:
    if isinstance(dataset, IterableDataset):
        raise ConfigError(
            f"{name} returned an IterableDataset for {split}; optcli needs a map-style Dataset (with __len__ "
            "and __getitem__), so that it can seed, shuffle and resume mid-epoch"
        )
    if not (callable(getattr(dataset, "__len__", None)) and callable(getattr(dataset, "__getitem__", None))):
        raise ConfigError(
            f"{name} returned a {type(dataset).__name__} for {split}, not a Dataset (an object with __len__ and "
            "__getitem__), nor a mapping {train, val, test} of them"
        )
    if len(dataset) < 1:
        raise ConfigError(f"{name}: the {split} Dataset is empty")


def _check_sample(sample: Any, split: str, name: str) -> None:
    if isinstance(sample, Mapping) or (isinstance(sample, list | tuple) and len(sample) == 2):
        return
    shown = f"a {type(sample).__name__}" + (
        f" of {len(sample)} items" if isinstance(sample, list | tuple) else ""
    )
    raise ConfigError(
        f"{name}: a {split} sample is {shown}, not an (input, target) pair or a dict (with '{TARGET_KEY}' for the "
        "targets, the Hugging Face convention)"
    )


def _class_count(dataset: Any) -> int:
    """How many classes: the Dataset's `classes` (torchvision's convention) or its `targets`; else 0,
    unknown (a model sized from the data then needs model.out_features)."""
    classes = getattr(dataset, "classes", None)
    if classes is not None:
        return len(classes)
    targets = getattr(dataset, "targets", None)
    if targets is not None and len(targets):
        return int(torch.as_tensor(targets).max()) + 1
    return 0


def _class_names(dataset: Any) -> tuple[str, ...] | None:
    classes = getattr(dataset, "classes", None)
    return tuple(str(name) for name in classes) if classes is not None else None
