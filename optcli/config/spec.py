"""What a validated config becomes: the classes it names with their bound arguments, and the run's
shape. Plain data, built by `resolve.py`; `train/session.py` makes the live objects from it.

The bound form is also what a run records: `RunSpec.resolved` (config.yaml) is read off these objects,
every default filled in, in YAML that `optcli train` accepts again.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from optcli.components.forward import Forward, ModelLoss
from optcli.components.hugging_face import HuggingFaceModel
from optcli.components.registry import import_object, imported_neighbours
from optcli.components.signature import TensorValue, plain, recorded_arguments
from optcli.config.init_and_groups import ModelInit, ParamGroup
from optcli.config.metrics import better_direction, validation_metrics
from optcli.config.schema import (
    MLFLOW_POINTS,
    SECTION_KEYS,
    ClipConfig,
    LoaderOptions,
    OutputConfig,
    TrainConfig,
)
from optcli.data.batches import batches_per_epoch
from optcli.data.in_memory import DataInfo
from optcli.data.registry import open_source
from optcli.metrics.table import Metric


@dataclass(frozen=True)
class Component:
    """A class chosen by name in the config, with its arguments bound to its signature."""

    name: str  # as the config names it (an import path made absolute)
    target: Callable[..., Any]
    arguments: dict[str, Any]
    supplied_by_code: frozenset[str] = frozenset()  # what `build` passes: the params, the optimizer
    # A wrapper's wrapped component (Lookahead's optimizer): built first, from the same live
    # arguments, and passed to the wrapper in their place.
    inner: Component | None = None

    def build(self, *live_arguments: Any) -> Any:
        if self.inner is not None:
            live_arguments = (self.inner.build(*live_arguments),)
        arguments = self.arguments
        if any(isinstance(value, TensorValue) for value in arguments.values()):
            import torch

            # An optimizer's (a tensor lr) on the CPU even while the dry run builds on the meta device:
            # it reads its value. A loss's class weights follow the module to its device.
            device = "cpu" if "params" in self.supplied_by_code else None
            tensors = {
                k: torch.tensor(v, dtype=torch.get_default_dtype(), device=device)
                for k, v in arguments.items()
                if isinstance(v, TensorValue)
            }
            arguments = {**arguments, **tensors}
        return self.target(*live_arguments, **arguments)

    def record(self) -> dict[str, Any]:
        arguments = recorded_arguments(self.target, self.arguments, self.supplied_by_code)
        verbatim = {key: arguments.pop(key) for key in list(arguments) if key in SECTION_KEYS}
        recorded = {"name": self.name, **arguments}
        if verbatim:  # arguments named as optcli's own keys (a model factory's `name`)
            recorded["args"] = verbatim
        if self.inner is not None:
            recorded[WRAPPED_ARGUMENT] = self.inner.record()
        return recorded

    def __reduce__(self) -> tuple[Any, ...]:
        # A class from a user's .py file lives in a module only this process imported: a compare
        # worker loads it again by its (absolute) import path.
        if ":" in self.name and self.name.rpartition(":")[0].endswith(".py"):
            return (_component_from_path, (self.name, self.arguments, self.supplied_by_code, self.inner))
        return (Component, (self.name, self.target, self.arguments, self.supplied_by_code, self.inner))


# The argument through which a wrapper optimizer (Lookahead) takes the optimizer it wraps.
WRAPPED_ARGUMENT = "optimizer"


def _component_from_path(
    name: str, arguments: dict[str, Any], supplied: frozenset[str], inner: Component | None
) -> Component:
    return Component(name, import_object(name, Path.cwd()), arguments, supplied, inner)


@dataclass(frozen=True)
class SchedulerSpec:
    component: Component
    interval: Literal["epoch", "step"]
    monitor: str | None  # the metric ReduceLROnPlateau is stepped with; None for other schedulers
    children: tuple[Component, ...] = ()  # SequentialLR / ChainedScheduler's inner schedulers
    filled: tuple[str, ...] = ()  # run-length arguments optcli filled in: "T_max", "schedulers.1.T_max"

    def build(self, optimizer: Any) -> Any:
        if not self.children:
            return self.component.build(optimizer)
        inner = [child.build(optimizer) for child in self.children]
        return self.component.target(optimizer=optimizer, schedulers=inner, **self.component.arguments)

    def record(self) -> dict[str, Any]:
        recorded = self.component.record()
        if self.children:
            recorded["schedulers"] = [child.record() for child in self.children]
        recorded["interval"] = self.interval
        if self.monitor is not None:
            recorded["monitor"] = self.monitor
        return recorded


@dataclass(frozen=True)
class OptimizerPart:
    """One optimizer over some of the model's parameters: `optimizer.parts.<name>`."""

    name: str
    selectors: tuple[str, ...]  # kinds (PARAMETER_KINDS) and name globs
    optimizer: Component
    param_groups: tuple[ParamGroup, ...] = ()
    scheduler: SchedulerSpec | None = None

    def record(self) -> dict[str, Any]:
        recorded = {**self.optimizer.record(), "params": list(self.selectors)}
        if self.param_groups:
            recorded["param_groups"] = [group.record() for group in self.param_groups]
        if self.scheduler is not None:
            recorded["scheduler"] = self.scheduler.record()
        return recorded


@dataclass(frozen=True)
class DataSource:
    """One dataset the config names (the training data, or its validation or test data): the dataset
    object, built once from its component, and what it said about itself."""

    component: Component
    source: Any  # an in-memory dataset (describe() and load(seed, split)), or a user's UserDatasets
    info: DataInfo

    def __reduce__(self) -> tuple[Any, ...]:
        # A compare worker rebuilds the dataset object from its arguments (cheap: it reads nothing yet).
        return (_source_from_component, (self.component, self.info))


def _source_from_component(component: Component, info: DataInfo) -> DataSource:
    return DataSource(component, open_source(component), info)


@dataclass(frozen=True)
class DataSpec:
    train: DataSource
    loader: LoaderOptions
    val: DataSource | None = None  # validation data of its own (`data.val`)
    test: DataSource | None = None  # test data, evaluated once at the end (`data.test`)
    # Two classes judged by a binary loss (bce_with_logits): the labels 0 and 1 are given to it as
    # floats, of shape (batch, 1), and the model has one output, a logit.
    binary_labels: bool = False

    @property
    def name(self) -> str:
        return self.train.component.name

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
    def test_samples_held_out(self) -> int:
        """Samples `test_fraction` takes from the training data (of the whole, as `val_fraction`)."""
        if self.loader.test_fraction is None:
            return 0
        return max(1, round(self.info.samples * self.loader.test_fraction))

    @property
    def train_samples(self) -> int:
        return self.info.samples - self.val_samples_held_out - self.test_samples_held_out

    @property
    def from_user_dataset(self) -> bool:
        """Batches come from a DataLoader over the user's Dataset (not from whole in-memory tensors)."""
        return getattr(self.train.source, "IS_USER_DATASET", False)

    @property
    def has_validation(self) -> bool:
        own_split = self.from_user_dataset and self.train.source.has_split("val")
        return self.val is not None or self.loader.val_fraction is not None or own_split

    @property
    def is_classification(self) -> bool:
        return self.info.is_classification

    @property
    def batches_per_epoch(self) -> int:
        return batches_per_epoch(self.train_samples, self.loader.batch_size, self.loader.drop_last)

    def record(self) -> dict[str, Any]:
        recorded = {**self.train.component.record(), **self.loader.model_dump()}
        for key, split in (("val", self.val), ("test", self.test)):
            if split is not None:
                recorded[key] = split.component.record()
        return recorded


def optimizer_steps(batches: int, accumulate: int) -> int:
    """Optimizer steps in an epoch of `batches` micro-batches: a short last group is a step too."""
    return -(-batches // accumulate)


@dataclass(frozen=True)
class SchedulePreview:
    """From the dry run: the learning rate the optimizer is given, and the rate of every scheduler
    period of the run (epochs or optimizer steps, as the scheduler is stepped)."""

    start_lr: float
    rates: tuple[float, ...]  # the default parameter group's (param_groups[0], as metrics.csv logs)
    group_rates: tuple[tuple[float, ...], ...] = ()  # with parameter groups: every group's, per period
    # A long run's preview is sampled: the periods (0-based) the rates are for; empty: every period.
    periods: tuple[int, ...] = ()


@dataclass(frozen=True)
class DryRunFindings:
    """What the dry run saw that is not an error, for `check`'s warnings."""

    # None without a scheduler, or for ReduceLROnPlateau (which follows a metric).
    schedule: SchedulePreview | None = None
    # Arguments an optimizer that takes **kwargs accepted but never stored (a misspelling, likely).
    unread_arguments: tuple[str, ...] = ()
    start_lr: float | None = None  # the optimizer's learning rate as configured, before any schedule
    group_table: tuple[str, ...] = ()  # with optimizer.param_groups: a line per group, for check and train
    start_lrs: tuple[float, ...] = ()  # every parameter group's rate as configured
    output_width: int | None = None  # the outputs per sample the loss sees, when that is one number
    # One training batch's forward pass in floating-point operations (torch's FlopCounterMode on the
    # meta device): how much work a step has to share among threads (train.threads: auto).
    forward_flops: int | None = None


def forward_of(
    model: Component | None, output_key: str | int | None, loss: Component, data: DataSpec
) -> Forward:
    """The forward pass for a run's model, loss and data (training's, and the dry run's check of it)."""
    from_model = isinstance(loss.target, type) and issubclass(loss.target, ModelLoss)
    causal = model is not None and isinstance(model.target, HuggingFaceModel) and model.target.causal
    return Forward(output_key, from_model, data.info.sequence_length is not None, from_model and causal)


@dataclass(frozen=True)
class RunSpec:
    """Everything a run needs, validated, and what its one dry run before training showed."""

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
    findings: DryRunFindings = field(default_factory=DryRunFindings, repr=False)
    param_groups: tuple[ParamGroup, ...] = ()  # optimizer.param_groups
    parts: tuple[OptimizerPart, ...] = ()  # optimizer.parts (then `optimizer` is the class combining them)
    model_output: str | int | None = None  # model.output: what the loss sees of the model's output
    model_init: ModelInit | None = None  # model.init: trained weights to start from
    metrics: tuple[Metric, ...] = ()  # metrics: what evaluations report besides the loss
    notes: tuple[str, ...] = ()  # what optcli decided that the user should hear (a carried-over argument)

    @functools.cached_property
    def forward(self) -> Forward:
        """How a batch becomes the loss: the call for the batch's kind, and what the loss sees."""
        return forward_of(self.model, self.model_output, self.loss, self.data)

    @property
    def stepping(self) -> SchedulerSpec | None:
        """The scheduler whose interval and monitor say when schedulers step: the run's, or the parts'
        own (which share them)."""
        return self.scheduler or next((part.scheduler for part in self.parts if part.scheduler), None)

    @property
    def rate_columns(self) -> tuple[tuple[str, int], ...]:
        """Beside `lr` (param_groups[0]'s rate), the rates metrics.csv logs, as (column, index in
        param_groups): lr_group1, ... for optimizer.param_groups; with parts, every part's groups under
        its name (lr_muon, lr_muon_group1, ..., lr_adamw)."""
        if not self.parts:
            return tuple((f"lr_group{number}", number) for number in range(1, len(self.param_groups) + 1))
        columns, index = [], 0
        for part in self.parts:
            for number in range(len(part.param_groups) + 1):
                columns.append((f"lr_{part.name}" + (f"_group{number}" if number else ""), index))
                index += 1
        return tuple(columns)

    @property
    def optimizer_description(self) -> str:
        """The optimizer's name, or its parts' ('muon: Muon + adamw: AdamW')."""
        if not self.parts:
            return self.optimizer.name
        return " + ".join(f"{part.name}: {part.optimizer.name}" for part in self.parts)

    @property
    def steps_per_epoch(self) -> int:
        """Optimizer steps per epoch: micro-batches grouped by train.accumulate."""
        return optimizer_steps(self.data.batches_per_epoch, self.train.accumulate)

    @property
    def validation_metrics(self) -> tuple[str, ...]:
        """The columns an evaluation fills in epochs.csv and evals.csv (none without validation data)."""
        if not self.data.has_validation:
            return ()
        return validation_metrics(self.metrics, self.judged)

    @property
    def judged(self) -> bool:
        """The model's output can be compared with the targets (a model that computes its own loss
        gives only that, unless model.output names its predictions)."""
        return not self.forward.from_model or self.model_output is not None

    @property
    def evaluated_metrics(self) -> tuple[Metric, ...]:
        """What an evaluation measures besides the loss: none where the output cannot be judged."""
        return self.metrics if self.judged else ()

    def direction(self, metric: str) -> Literal["min", "max"]:
        """Which way one of the run's metrics (train_loss, val_f1_macro) is better."""
        return better_direction(metric, self.metrics)

    @functools.cached_property
    def resolved(self) -> dict[str, Any]:
        """What config.yaml records: every argument, every default, every filled-in value."""
        record: dict[str, Any] = {
            "name": self.name,
            "seed": self.seed,
            "device": self.device,
            "deterministic": self.deterministic,
            "model": self.model.record(),
            "data": self.data.record(),
            "loss": self.loss.record(),
            "optimizer": self.optimizer.record(),
        }
        if self.model_output is not None:
            record["model"]["output"] = self.model_output
        if self.model_init is not None:
            record["model"].update(self.model_init.record())
        if self.param_groups:
            record["optimizer"]["param_groups"] = [group.record() for group in self.param_groups]
        if self.parts:
            record["optimizer"] = {"parts": {part.name: part.record() for part in self.parts}}
        if self.scheduler is not None:
            record["scheduler"] = self.scheduler.record()
        if self.clip is not None:
            record["clip"] = self.clip.model_dump(exclude_none=True)
        record["metrics"] = [metric.record() for metric in self.metrics]
        record["train"] = self.train.model_dump()
        record["output"] = self.output.model_dump()
        if self.output.mlflow is not None:
            record["output"]["mlflow"]["log_every"] = self.mlflow_log_every
        return plain(record)  # type: ignore[no-any-return]

    @property
    def mlflow_log_every(self) -> int:
        """output.mlflow.log_every as a number (auto: see MlflowConfig)."""
        chosen = self.output.mlflow.log_every if self.output.mlflow is not None else "auto"
        rows = self.train.log_every
        if chosen is None:  # (a config.yaml of an earlier version: every row of metrics.csv)
            return rows
        if chosen != "auto":
            return chosen
        return rows * max(1, math.ceil(self.total_steps / (MLFLOW_POINTS * rows)))

    def user_files(self) -> list[str]:
        """The Python files of the user's that the config names (`models.py:Net`), and those they
        import from their folders: code that checking and training run."""
        components: list[Component | None] = [
            self.model,
            self.loss,
            self.optimizer,
            self.data.train.component,
        ]
        components += [self.optimizer.inner]
        components += [split.component for split in (self.data.val, self.data.test) if split is not None]
        for part in self.parts:
            components += [part.optimizer, part.optimizer.inner]
        components += [metric.measure for metric in self.metrics]
        for scheduler in (self.scheduler, *(part.scheduler for part in self.parts)):
            if scheduler is not None:  # (SequentialLR's inner schedulers too)
                components += [scheduler.component, *scheduler.children]
        files = [
            component.name.rpartition(":")[0]
            for component in components
            if component is not None and component.name.rpartition(":")[0].endswith(".py")
        ]
        return sorted({*files, *(neighbour for file in files for neighbour in imported_neighbours(file))})

    def outline(self) -> str:
        """The run in one line: 'mlp on random (1280 samples, batch 64), Adam, StepLR per epoch; 20 epochs, ...'."""
        scheduler = self.scheduler
        scheduled = f", {scheduler.component.name} per {scheduler.interval}" if scheduler else ""
        return (
            f"{self.model.name} on {self.data.name} ({self.data.info.samples} samples, batch "
            f"{self.data.loader.batch_size}), {self.optimizer_description}{scheduled}; {self.epochs} epochs, "
            f"{self.total_steps} steps on {self.device}"
        )

    @property
    def config_hash(self) -> str:
        """Identifies what the run computes: its name, where its files go and how often, and its thread
        count are not part of that (NOT_COMPUTED)."""
        return hash_resolved(self.resolved)


# What a run's name, its files' place and cadence, and its thread count change: never what it
# computes (how many threads sum it is how fast, not what: train.threads: auto chooses by the
# machine's load). `device` stays in: another device computes other floating-point values.
NOT_COMPUTED = {
    "": ("name", "output"),
    "train": ("threads", "log_every", "checkpoint", "checkpoint_every", "checkpoint_interval"),
}
# The keys the hashes of comparisons started by optcli 0.x before these left out.
NOT_COMPUTED_BEFORE: dict[str, tuple[str, ...]] = {"": ("output",), "train": ("threads",)}


def hash_resolved(resolved: dict[str, Any], left_out: dict[str, tuple[str, ...]] = NOT_COMPUTED) -> str:
    """The hash of what a resolved config (RunSpec.resolved, or a checkpoint's record of it) computes:
    the `left_out` keys (by section, "" for the top level) are not part of it."""
    what_is_computed = {key: value for key, value in resolved.items() if key not in left_out[""]}
    for section, keys in left_out.items():
        if section and isinstance(resolved.get(section), dict):
            what_is_computed[section] = {k: v for k, v in resolved[section].items() if k not in keys}
    canonical = json.dumps(what_is_computed, sort_keys=True, default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]
