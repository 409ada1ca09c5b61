"""The data of a run as tensors: the training data, the validation split or set, the test set, with
labels made consistent and features normalized by the training data alone."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch.utils.data import Subset

from optcli.config.spec import DataSource, DataSpec
from optcli.data.in_memory import TensorData
from optcli.errors import ConfigError
from optcli.seeds import derive_seed


@dataclass(frozen=True)
class LoadedData:
    train: TensorData
    val: TensorData | None
    test: TensorData | None
    description: dict[str, Any] = field(default_factory=dict)  # written to the run's data.json


def load_data(data: DataSpec, seed: int) -> LoadedData:
    data_seed = derive_seed(seed, "data")
    train = data.train.source.load(data_seed, "train")
    val = _load_split(data.val, data, data_seed, "val")
    test = _load_split(data.test, data, data_seed, "test")
    if data.loader.test_fraction is not None:  # first, so that validation never sees a test sample
        train, test = hold_out(train, data.test_samples_held_out, derive_seed(seed, "test_split"))
    if data.loader.val_fraction is not None:
        train, val = hold_out(train, data.val_samples_held_out, derive_seed(seed, "split"))
    if data.binary_labels:  # a binary loss takes float labels shaped as its one logit per sample
        train, val, test = (_as_float_labels(part) for part in (train, val, test))  # type: ignore[assignment]
    description: dict[str, Any] = {
        "train_samples": len(train),
        "val_samples": len(val) if val is not None else 0,
        "test_samples": len(test) if test is not None else 0,
    }
    if data.info.class_names:
        description["class_names"] = list(data.info.class_names)
    if data.loader.normalize:
        mean, std = feature_statistics(train.inputs)
        train, val, test = (_standardize(part, mean, std) for part in (train, val, test))
        description["normalization"] = {"mean": mean.flatten().tolist(), "std": std.flatten().tolist()}
    return LoadedData(train, val, test, description)


@dataclass(frozen=True)
class LoadedDatasets:
    """A user's Datasets (their validation and test parts split off when asked), for DataLoaders."""

    train: Any
    val: Any | None
    test: Any | None
    collate_fn: Any | None
    description: dict[str, Any] = field(default_factory=dict)


def load_datasets(data: DataSpec, seed: int) -> LoadedDatasets:
    """The Datasets the user's callable made, with the same seeded held-out splits as in-memory data."""
    made = data.train.source.datasets()
    train, val, test = made.train, made.val, made.test
    if data.loader.test_fraction is not None:
        train, test = hold_out_dataset(train, data.test_samples_held_out, derive_seed(seed, "test_split"))
    if data.loader.val_fraction is not None:
        train, val = hold_out_dataset(train, data.val_samples_held_out, derive_seed(seed, "split"))
    description: dict[str, Any] = {
        split: len(part) if part is not None else 0
        for split, part in (("train_samples", train), ("val_samples", val), ("test_samples", test))
    }
    if data.info.class_names:
        description["class_names"] = list(data.info.class_names)
    return LoadedDatasets(train, val, test, made.collate_fn, description)


def hold_out_dataset(dataset: Any, count: int, seed: int) -> tuple[Subset[Any], Subset[Any]]:
    """`hold_out` for a Dataset: the same seeded choice of samples, as two Subsets."""
    order = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(seed))
    held_out, kept = order[:count].sort().values, order[count:].sort().values
    return Subset(dataset, kept.tolist()), Subset(dataset, held_out.tolist())


def _as_float_labels(data: TensorData | None) -> TensorData | None:
    if data is None:
        return None
    return TensorData(data.inputs, data.targets.to(torch.get_default_dtype()).unsqueeze(1))


def hold_out(data: TensorData, count: int, seed: int) -> tuple[TensorData, TensorData]:
    """A seeded random `count` samples for validation; both parts keep the data's own order."""
    kept, held_out = hold_out_dataset(data, count, seed)
    return data.subset(torch.tensor(kept.indices, dtype=torch.long)), data.subset(
        torch.tensor(held_out.indices, dtype=torch.long)
    )


def feature_statistics(inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Each feature's mean and standard deviation; a constant feature gets 1 (it is only centred)."""
    mean = inputs.mean(dim=0)
    std = inputs.std(dim=0, unbiased=False)
    return mean, torch.where(std > 0, std, torch.ones_like(std))


def _standardize(data: TensorData | None, mean: torch.Tensor, std: torch.Tensor) -> TensorData | None:
    if data is None:
        return None
    return TensorData((data.inputs - mean) / std, data.targets)


def _load_split(split: DataSource | None, data: DataSpec, seed: int, name: str) -> TensorData | None:
    if split is None:
        return None
    loaded = split.source.load(seed, name)
    train_names, own_names = data.info.class_names, split.info.class_names
    if train_names and own_names and train_names != own_names:
        # Class indices follow each file's own sorted labels: renumber them as the training data does.
        position = {label: index for index, label in enumerate(train_names)}
        try:
            mapping = torch.tensor([position[label] for label in own_names])
        except KeyError as error:
            raise ConfigError(f"data.{name}: label {error} does not appear in the training data") from None
        loaded = TensorData(loaded.inputs, mapping[loaded.targets])
    return loaded
