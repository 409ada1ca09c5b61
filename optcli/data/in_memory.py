"""In-memory datasets that describe their shape before any tensor exists (the registry of names is
dataset_registry.py).

Each dataset class takes the config's keyword arguments in `__init__` (its signature is the schema),
answers `describe()` cheaply so the config can be checked and the model sized, and builds its
tensors in `load(seed, split)`. `split` is "train", "val" or "test": synthetic datasets draw other
samples for each split (from the same teacher), file datasets ignore it.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from optcli.errors import ConfigError
from optcli.seeds import derive_seed


@dataclass(frozen=True)
class DataInfo:
    """What the rest of the config needs to know about a dataset."""

    samples: int
    feature_shape: tuple[int, ...]  # one sample's input shape
    classes: int | None  # None for real-valued (regression) targets
    target_size: int = 1  # regression outputs per sample
    class_names: tuple[str, ...] | None = None  # what each class index stands for, when the data says
    target_shape: tuple[int, ...] | None = None  # one sample's regression target, when not (target_size,)
    task_reason: str = ""  # why the targets are taken for class labels or values, when it was a guess
    # A Dataset of one's own gives one real value per sample as a number: its batches' targets are made
    # a column (batch, 1), shaped as the model's output, as in-memory data's are when loaded.
    target_column: bool = False
    # A table's column names: the features (in the order the model sees them) and the target.
    column_names: tuple[tuple[str, ...], str] | None = None
    # Text: a sample is `sequence_length` token ids and its targets the next token at every position
    # (classification per position, `classes` the vocabulary); `tokenizer` names how text became ids.
    sequence_length: int | None = None
    tokenizer: str | None = None

    @property
    def features(self) -> int:
        return math.prod(self.feature_shape)

    @property
    def is_classification(self) -> bool:
        return self.classes is not None

    @property
    def out_features(self) -> int:
        return self.classes if self.classes is not None else self.target_size

    @property
    def sample_target_shape(self) -> tuple[int, ...]:
        """One sample's target: () for a class label, else the values' shape."""
        if self.sequence_length is not None:
            return (self.sequence_length,)
        if self.classes is not None:
            return ()
        return self.target_shape or (self.target_size,)


@dataclass(frozen=True)
class TensorData:
    inputs: torch.Tensor
    targets: torch.Tensor
    # Token ids kept compact (text's bytes): batches are widened to int64, which embeddings and
    # cross-entropy take, one batch at a time.
    tokens: bool = False
    # The data's identity when hashing every byte would read a whole memory-mapped corpus.
    fingerprint: str | None = None

    def __len__(self) -> int:
        return len(self.inputs)

    def subset(self, indices: torch.Tensor) -> TensorData:
        """The rows `indices` (sorted): a view when they are consecutive, else a copy."""
        count = len(indices)
        if count and int(indices[-1]) - int(indices[0]) + 1 == count:
            start = int(indices[0])
            rows = slice(start, start + count)
            fingerprint = f"{self.fingerprint}:{start}:{count}" if self.fingerprint else None
            return TensorData(self.inputs[rows], self.targets[rows], self.tokens, fingerprint)
        return TensorData(self.inputs[indices], self.targets[indices], self.tokens)


# A dataset's `load(seed, split)` builds its tensors. `split` is "train", "val" or "test": synthetic
# datasets draw other samples for each split (from the same teacher), file datasets ignore it.


def _require_positive(**values: int) -> None:
    for key, value in values.items():
        if value < 1:
            raise ConfigError(f"{key}: must be at least 1, got {value}")


class RandomData:
    """The guide's data: `torch.randn` inputs and `torch.randint` labels. Nothing to learn, by design."""

    DRAWS_EACH_SPLIT = True  # validation and test data are other samples, whatever the arguments

    def __init__(
        self,
        samples: int = 1280,
        features: int = 784,
        classes: int = 10,
        seed: int | None = None,
    ):
        _require_positive(samples=samples, features=features, classes=classes)
        self.samples, self.features, self.classes, self.seed = (
            samples,
            features,
            classes,
            seed,
        )

    def describe(self) -> DataInfo:
        return DataInfo(self.samples, (self.features,), self.classes)

    def load(self, seed: int, split: str = "train") -> TensorData:
        base = self.seed if self.seed is not None else seed
        generator = torch.Generator().manual_seed(base if split == "train" else derive_seed(base, split))
        inputs = torch.randn(self.samples, self.features, generator=generator)
        targets = torch.randint(0, self.classes, (self.samples,), generator=generator)
        return TensorData(inputs, targets)


class TeacherData:
    """Labels from a fixed random teacher network: a learnable task on which optimizers differ."""

    DRAWS_EACH_SPLIT = True

    def __init__(
        self,
        samples: int = 2048,
        features: int = 32,
        classes: int = 4,
        teacher_hidden: int = 64,
        seed: int | None = None,
    ):
        _require_positive(
            samples=samples,
            features=features,
            classes=classes,
            teacher_hidden=teacher_hidden,
        )
        self.samples, self.features, self.classes = samples, features, classes
        self.teacher_hidden, self.seed = teacher_hidden, seed

    def describe(self) -> DataInfo:
        return DataInfo(self.samples, (self.features,), self.classes)

    def load(self, seed: int, split: str = "train") -> TensorData:
        base = self.seed if self.seed is not None else seed
        generator = torch.Generator().manual_seed(base)
        hidden_weights = torch.randn(self.features, self.teacher_hidden, generator=generator)
        output_weights = torch.randn(self.teacher_hidden, self.classes, generator=generator)
        if split != "train":  # the same teacher, other samples
            generator = torch.Generator().manual_seed(derive_seed(base, split))
        inputs = torch.randn(self.samples, self.features, generator=generator)
        logits = torch.tanh(inputs @ hidden_weights / math.sqrt(self.features)) @ output_weights
        return TensorData(inputs, logits.argmax(dim=1))


class TensorFileData:
    """Tensors from a file: a `.pt` dict or an `.npz` archive holding `x` (inputs) and `y` (targets).

    Integer targets are class labels; floating-point targets are regression targets.
    """

    PATH_ARGUMENTS = ("path",)  # resolved relative to the config file

    def __init__(self, path: str):
        self.path = Path(path)

    def describe(self) -> DataInfo:
        inputs, targets = _read_tensor_file(str(self.path), modified_time(self.path, "path"))
        if targets.is_floating_point():
            shape = tuple(targets.shape[1:]) or (1,)
            return DataInfo(len(inputs), tuple(inputs.shape[1:]), None, math.prod(shape), target_shape=shape)
        return DataInfo(len(inputs), tuple(inputs.shape[1:]), int(targets.max()) + 1)

    def load(self, seed: int, split: str = "train") -> TensorData:
        inputs, targets = _read_tensor_file(str(self.path), modified_time(self.path, "path"))
        if targets.is_floating_point() and targets.dim() == 1:
            targets = targets.unsqueeze(1)  # one output per sample, shaped as the model's output
        return TensorData(inputs, targets)


def modified_time(path: Path, key: str) -> float:
    """A file's modification time (the key of read caches); a missing file is a ConfigError on `key`."""
    try:
        return path.stat().st_mtime
    except OSError:
        raise ConfigError(f"{key}: no such file {path}") from None


@functools.lru_cache(maxsize=4)
def _read_tensor_file(path: str, modified_time: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Read and check `x` and `y`; cached so that checking and training read the file once."""
    arrays = read_arrays(path, "path")
    if not isinstance(arrays, dict) or "x" not in arrays or "y" not in arrays:
        found = sorted(arrays) if isinstance(arrays, dict) else type(arrays).__name__
        raise ConfigError(
            f"path: {path} must hold a mapping with 'x' (inputs) and 'y' (targets); found {found}"
        )
    inputs, targets = torch.as_tensor(arrays["x"]), torch.as_tensor(arrays["y"])
    if inputs.dim() < 2 or len(inputs) == 0:
        raise ConfigError(
            f"path: x in {path} must have shape (samples, features...), got {tuple(inputs.shape)}"
        )
    if len(inputs) != len(targets):
        raise ConfigError(f"path: {path} has {len(inputs)} inputs but {len(targets)} targets")
    for name, values in (("x", inputs), ("y", targets)):
        if (row := first_non_finite_row(values)) is not None:
            raise ConfigError(
                f"path: {name} in {path} holds non-finite values (nan or inf), first in row {row}; "
                "training needs finite values"
            )
    if targets.dtype == torch.bool or not (targets.is_floating_point() or targets.dtype.is_signed):
        targets = targets.long()
    if not targets.is_floating_point():
        if targets.dim() != 1 or int(targets.min()) < 0:
            raise ConfigError(
                f"path: integer y in {path} must be class indices 0, 1, ... of shape (samples,)"
            )
        targets = targets.long()
    else:
        targets = targets.to(torch.get_default_dtype())
    return inputs.to(torch.get_default_dtype()), targets


def read_arrays(path: str, key: str) -> Any:
    """What a `.pt` (a torch.load with weights_only) or `.npz` file holds; a file that cannot be
    read is a ConfigError naming `key`."""
    if path.endswith(".npz"):
        import numpy

        try:
            with numpy.load(path, allow_pickle=False) as archive:
                return {name: torch.from_numpy(archive[name].copy()) for name in archive.files}
        except Exception as error:
            raise ConfigError(f"{key}: cannot read {path} as an .npz archive: {error}") from None
    if path.endswith((".pt", ".pth")):
        try:
            return torch.load(path, weights_only=True, map_location="cpu")
        except Exception as error:
            raise ConfigError(f"{key}: cannot read {path} as a torch file: {error}") from None
    raise ConfigError(f"{key}: {path} should end in .pt or .npz")


def first_non_finite_row(values: torch.Tensor) -> int | None:
    """The first sample (row) holding nan or inf, or None when every value is finite."""
    if not values.is_floating_point() or bool(torch.isfinite(values).all()):
        return None
    return int((~torch.isfinite(values.reshape(len(values), -1))).any(dim=1).nonzero()[0])
