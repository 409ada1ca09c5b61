"""What a validated config becomes: the classes it names with their checked arguments, and the run's shape.

These are plain data, built by `resolve.py` and used by `session.py` to make live objects.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import torch

from optcli.config.schema import ClipConfig, LoaderConfig, OutputConfig, TrainConfig
from optcli.data.in_memory import DataInfo


@dataclass(frozen=True)
class Component:
    """A class chosen by name in the config, with its checked keyword arguments."""

    name: str
    target: Callable[..., Any]
    arguments: dict[str, Any]

    def build(self, *live_arguments: Any) -> Any:
        return self.target(*live_arguments, **self.arguments)


@dataclass(frozen=True)
class SchedulerSpec:
    component: Component
    interval: Literal["epoch", "step"]
    monitor: str | None  # the metric ReduceLROnPlateau is stepped with; None for other schedulers
    children: tuple[Component, ...] = ()  # SequentialLR / ChainedScheduler's inner schedulers

    def build(self, optimizer: torch.optim.Optimizer) -> Any:
        if not self.children:
            return self.component.build(optimizer)
        inner = [child.build(optimizer) for child in self.children]
        return self.component.target(optimizer=optimizer, schedulers=inner, **self.component.arguments)


@dataclass(frozen=True)
class DataSource:
    """One dataset the config names: the training data, or its validation or test data."""

    name: str
    source: Any  # a dataset object (describe() and load(seed, split))
    info: DataInfo


@dataclass(frozen=True)
class DataSpec:
    train: DataSource
    loader: LoaderConfig
    val: DataSource | None = None  # validation data of its own (`data.val`)
    test: DataSource | None = None  # test data, evaluated once at the end (`data.test`)

    @property
    def name(self) -> str:
        return self.train.name

    @property
    def info(self) -> DataInfo:
        return self.train.info

    @property
    def val_samples_held_out(self) -> int:
        """Samples `val_fraction` takes from the training data."""
        if self.loader.val_fraction is None:
            return 0
        return max(1, round(self.info.samples * self.loader.val_fraction))

    @property
    def train_samples(self) -> int:
        return self.info.samples - self.val_samples_held_out

    @property
    def has_validation(self) -> bool:
        return self.val is not None or self.loader.val_fraction is not None

    @property
    def is_classification(self) -> bool:
        return self.info.is_classification

    @property
    def steps_per_epoch(self) -> int:
        if self.loader.drop_last:
            return self.train_samples // self.loader.batch_size
        return math.ceil(self.train_samples / self.loader.batch_size)


@dataclass(frozen=True)
class RunSpec:
    """Everything a run needs, validated; `resolved` is what config.yaml records."""

    name: str
    seed: int
    deterministic: bool
    device: str
    model: Component
    data: DataSpec
    loss: Component
    optimizer: Component
    scheduler: SchedulerSpec | None
    clip: ClipConfig | None
    train: TrainConfig
    output: OutputConfig
    epochs: int  # epochs that will run (fewer than train.epochs when max_steps ends the run early)
    total_steps: int
    resolved: dict[str, Any] = field(repr=False)

    @property
    def config_hash(self) -> str:
        """Identifies what the run computes: where its files go (output) is not part of that."""
        what_is_computed = {key: value for key, value in self.resolved.items() if key != "output"}
        canonical = json.dumps(what_is_computed, sort_keys=True, default=str)
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]
