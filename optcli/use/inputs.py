"""What `optcli predict` and `optcli evaluate` read: new samples, in the form the run's data section
reads them, put through the run's own preprocessing, in batches of a fixed size and in input order.

- A CSV table: read a block at a time (memory does not grow with the file), the run's feature
  columns found by name (a table run's) or by position (any other run: its features in order,
  optionally followed by the target), the target's column optional.
- A tensors file (`.pt` or `.npz`) holding `x`, and `y` optionally.
- A Dataset of the user's (`file.py:callable`, the run's own or another, with `--set data.…`): its
  samples in order, through the run's DataLoader machinery.

Normalization uses the statistics the run recorded in data.json (the training split's), exactly as the
run applied them; the batches are cut at the same sizes from the first sample on, so that a sample's
output does not depend on where a file's blocks happened to end.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from optcli.config.spec import DataSpec
from optcli.data.files import table_blocks
from optcli.data.in_memory import first_non_finite_row, read_arrays
from optcli.errors import ConfigError
from optcli.use.trained import TrainedRun

TENSOR_SUFFIXES = (".pt", ".pth", ".npz")


@dataclass(frozen=True)
class InputBatch:
    batch: Any  # what the model is called with: (inputs, targets or None), or a dict batch
    targets: list[str] | None  # each sample's target as text (a class name or a value), when given
    size: int


def is_dataset_input(given: str) -> bool:
    """`file.py:callable`: a Dataset of the user's."""
    return ":" in given and given.partition(":")[0].endswith(".py")


def dataset_input(trained: TrainedRun, given: str, settings: list[str]) -> DataSpec:
    """The run's data section with `given` for its Dataset callable and `--set data.…` applied: its
    loader options kept (and its arguments, for the run's own callable), its validation and test data
    left out (every sample is predicted)."""
    from optcli.config.data_section import resolve_data_alone
    from optcli.config.loading import apply_overrides
    from optcli.config.schema import DataSection

    recorded = trained.spec.resolved["data"]
    same = given == recorded["name"]  # the run's own callable keeps its arguments; another, the loader's only
    section = {
        key: value
        for key, value in recorded.items()
        if (same or key in DataSection.model_fields)
        and key not in ("val", "test", "val_fraction", "test_fraction")
    }
    section["name"] = given
    unknown = [setting for setting in settings if not setting.startswith("data.")]
    if unknown:
        raise ConfigError(f"--set {unknown[0]}: predict takes the data section's arguments only (data.…)")
    return resolve_data_alone(apply_overrides({"data": section}, settings)["data"], Path.cwd())


def input_batches(
    trained: TrainedRun, given: str, batch_size: int, dataset: DataSpec | None = None, key: str = "INPUT"
) -> Iterator[InputBatch]:
    """The input's samples, preprocessed as the run's were, in batches of `batch_size`."""
    if dataset is not None:
        yield from _dataset_batches(trained, dataset, batch_size)
        return
    if trained.spec.data.from_user_dataset:
        raise ConfigError(
            f"{key}: the run reads a Dataset of yours; give it as file.py:callable (with --set data.… for its "
            "arguments)"
        )
    path = Path(given)
    if not path.is_file():
        raise ConfigError(f"{key}: no such file {path}")
    if path.suffix in TENSOR_SUFFIXES:
        inputs, targets = _tensor_file(trained, path, key)
        for start in range(0, len(inputs), batch_size):
            part = targets[start : start + batch_size] if targets is not None else None
            yield _batch(trained, inputs[start : start + batch_size], part)
        return
    yield from _table_batches(trained, path, batch_size, key)


def _table_batches(trained: TrainedRun, path: Path, batch_size: int, key: str) -> Iterator[InputBatch]:
    features, target = table_columns(trained)
    delimiter = trained.spec.data.train.component.arguments.get("delimiter")
    shape = trained.spec.data.info.feature_shape  # a row is a sample's values, flattened (8×8 images: 64)
    blocks = (
        (block.inputs.reshape(len(block.inputs), *shape), block.labels)
        for block in table_blocks(path, features, target, delimiter, key)
    )
    for inputs, labels in rebatched(blocks, batch_size):
        yield _batch(trained, inputs, labels)


Rows = tuple[torch.Tensor, list[str] | None]


def rebatched(blocks: Iterator[Rows], size: int) -> Iterator[Rows]:
    """Blocks of rows of any lengths, as batches of `size` rows (the last one shorter), cut from the
    first row on: a row's batch does not depend on where the blocks ended."""
    pending: list[tuple[torch.Tensor, list[str] | None, int]] = []  # a block, and its first row not yet taken
    held = 0
    for inputs, labels in blocks:
        pending.append((inputs, labels, 0))
        held += len(inputs)
        while held >= size:
            yield _take(pending, size)
            held -= size
    if held:
        yield _take(pending, held)


def _take(pending: list[tuple[torch.Tensor, list[str] | None, int]], size: int) -> Rows:
    """The next `size` rows of the pending blocks, taken off them."""
    parts: list[torch.Tensor] = []
    labels: list[str] | None = None if pending[0][1] is None else []
    while size:
        inputs, block_labels, start = pending[0]
        end = min(len(inputs), start + size)
        parts.append(inputs[start:end])
        if labels is not None and block_labels is not None:
            labels.extend(block_labels[start:end])
        size -= end - start
        if end == len(inputs):
            pending.pop(0)
        else:
            pending[0] = (inputs, block_labels, end)
    return (parts[0] if len(parts) == 1 else torch.cat(parts)), labels


def table_columns(trained: TrainedRun) -> tuple[list[str], str]:
    """The run's feature columns and target column by name (a table run's, as data.json recorded
    them), or by position for any other run: features 0 … n-1, the target n."""
    recorded = trained.data.get("feature_columns")
    if recorded:
        return list(recorded), str(trained.data.get("target_column"))
    info = trained.spec.data.info
    if info.column_names:
        return list(info.column_names[0]), info.column_names[1]
    count = info.features
    return [str(index) for index in range(count)], str(count)


def _tensor_file(trained: TrainedRun, path: Path, key: str) -> tuple[torch.Tensor, list[str] | None]:
    arrays = read_arrays(str(path), key)
    if not isinstance(arrays, dict) or "x" not in arrays:
        raise ConfigError(
            f"{key}: {path} must hold a mapping with 'x' (inputs), and 'y' (targets) optionally"
        )
    inputs = torch.as_tensor(arrays["x"]).to(torch.get_default_dtype())
    _check_shape(trained, inputs, key)
    if (row := first_non_finite_row(inputs)) is not None:
        raise ConfigError(f"{key}: x in {path} holds non-finite values (nan or inf), first in row {row}")
    targets = None
    if "y" in arrays:
        values = torch.as_tensor(arrays["y"])
        if len(values) != len(inputs):
            raise ConfigError(f"{key}: {path} has {len(inputs)} inputs but {len(values)} targets")
        names = trained.class_names
        if names and not values.is_floating_point():
            targets = [names[index] if 0 <= index < len(names) else str(index) for index in values.tolist()]
        else:
            targets = [_text(value) for value in values.reshape(len(values), -1).tolist()]
    return inputs, targets


def _text(values: list[float] | list[int]) -> str:
    return " ".join(repr(value) for value in values)


def _check_shape(trained: TrainedRun, inputs: torch.Tensor, key: str) -> None:
    expected = tuple(trained.spec.data.info.feature_shape)
    if tuple(inputs.shape[1:]) != expected:
        raise ConfigError(
            f"{key}: each sample has shape {list(inputs.shape[1:])}; the run's model reads {list(expected)}"
        )


def _batch(trained: TrainedRun, inputs: torch.Tensor, targets: list[str] | None) -> InputBatch:
    normalization = trained.data.get("normalization")
    if normalization:  # the training split's statistics, as the run standardized every split
        shape = inputs.shape[1:]
        mean = torch.tensor(normalization["mean"], dtype=inputs.dtype).reshape(shape)
        std = torch.tensor(normalization["std"], dtype=inputs.dtype).reshape(shape)
        inputs = (inputs - mean) / std
    return InputBatch((inputs, None), targets, len(inputs))


def _dataset_batches(trained: TrainedRun, data: DataSpec, batch_size: int) -> Iterator[InputBatch]:
    """The Dataset's samples in order, batched by the run's own loader (seeded, not shuffled)."""
    from optcli.data.loader import LoaderBatches, batch_length, make_loader

    made = data.train.source.datasets()
    loader = make_loader(
        made.train, batch_size, seed=trained.spec.seed, shuffle=False, collate_fn=made.collate_fn
    )
    shaping = (trained.spec.data.binary_labels, data.info.target_column)
    names = trained.class_names
    for batch in LoaderBatches(loader, torch.device("cpu"), *shaping).epoch():
        targets = batch.get("labels") if isinstance(batch, dict) else batch[1]
        texts = None
        if isinstance(targets, torch.Tensor):
            if names and not targets.is_floating_point():
                texts = [names[index] for index in targets.tolist()]
            else:
                texts = [_text(row) for row in targets.reshape(len(targets), -1).tolist()]
        yield InputBatch(batch, texts, batch_length(batch))
