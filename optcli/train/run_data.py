"""The data of a run as tensors: the training data, the validation split or set, the test set, with
labels made consistent and features normalized by the training data alone."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch.utils.data import Subset

from optcli import seeds
from optcli.config.spec import DataSource, DataSpec
from optcli.config.splits import split_rows
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
    data_seed = derive_seed(seed, seeds.DATA)
    train = data.train.source.load(data_seed, "train")
    val = _load_split(data.val, data, data_seed, "val")
    test = _load_split(data.test, data, data_seed, "test")
    rows, held_out = split_rows(len(train), data, seed)
    if held_out:
        whole = train
        train = whole.subset(rows)
        val = whole.subset(held_out["val"]) if "val" in held_out else val
        test = whole.subset(held_out["test"]) if "test" in held_out else test
    if data.binary_labels:  # a binary loss takes float labels shaped as its one logit per sample
        train, val, test = (_as_float_labels(part) for part in (train, val, test))  # type: ignore[assignment]
    description = _describe(data, train, val, test, held_out)
    if data.loader.normalize:
        mean, std = feature_statistics(train.inputs)
        train, val, test = (_standardize(part, mean, std) for part in (train, val, test))
        description["normalization"] = {"mean": mean.flatten().tolist(), "std": std.flatten().tolist()}
    return LoadedData(train, val, test, description)


def _describe(
    data: DataSpec, train: Any, val: Any | None, test: Any | None, held_out: dict[str, torch.Tensor]
) -> dict[str, Any]:
    """data.json: the sizes, the class names, and which rows of the training data were held out (so
    that `rows.iloc[val_rows]` in pandas, or `x[val_rows]` in torch, rebuilds a split outside optcli)."""
    description: dict[str, Any] = {
        split: len(part) if part is not None else 0
        for split, part in (("train_samples", train), ("val_samples", val), ("test_samples", test))
    }
    if data.info.class_names:
        description["class_names"] = list(data.info.class_names)
    if data.info.column_names:  # a table's: what `optcli predict` finds its columns by
        description["feature_columns"] = list(data.info.column_names[0])
        description["target_column"] = data.info.column_names[1]
    if data.info.tokenizer is not None:  # text: what the samples are windows of
        description["text"] = {
            "tokenizer": data.info.tokenizer,
            "block_size": data.info.sequence_length,
            "tokens_sha256": (train.fingerprint or "").partition(":")[0],  # (its first 16 hex digits)
        }
    for split in ("val", "test"):
        if split in held_out and data.info.tokenizer is not None:  # the corpus's last windows
            description[f"{split}_windows"] = [int(held_out[split][0]), int(held_out[split][-1]) + 1]
        elif split in held_out:
            description[f"{split}_rows"] = held_out[split].tolist()
    return description


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
    rows, held_out = split_rows(len(train), data, seed)
    if held_out:
        whole = train
        train = Subset(whole, rows.tolist())
        val = Subset(whole, held_out["val"].tolist()) if "val" in held_out else val
        test = Subset(whole, held_out["test"].tolist()) if "test" in held_out else test
    return LoadedDatasets(train, val, test, made.collate_fn, _describe(data, train, val, test, held_out))


def _as_float_labels(data: TensorData | None) -> TensorData | None:
    if data is None:
        return None
    return TensorData(data.inputs, data.targets.to(torch.get_default_dtype()).unsqueeze(1))


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
