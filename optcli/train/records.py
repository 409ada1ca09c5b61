"""What the training loop produces. Sinks (CSV files, the terminal, the summary) consume these."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal


@dataclass(frozen=True)
class RunStarted:
    epochs: int
    steps_per_epoch: int
    total_steps: int
    parameters: int  # trainable parameters in the model
    init_hash: str  # the initial weights
    data_hash: str  # the data and its order


@dataclass(frozen=True)
class StepRecord:
    """One logged optimizer step: `lr` is the learning rate the step used."""

    step: int
    epoch: int
    loss: float
    lr: float
    grad_norm: float | None  # the total gradient norm before clipping
    elapsed_s: float
    # With optimizer.param_groups: the rates of the declared groups (1, 2, ...; `lr` is group 0's).
    group_lrs: tuple[float, ...] = ()


@dataclass(frozen=True)
class EpochRecord:
    """One finished epoch (or the part of it that ran, when max_steps ended it early)."""

    epoch: int
    step: int
    lr: float  # the learning rate the epoch's last step used
    elapsed_s: float
    # train_loss (the mean of the epoch's step losses); with validation data val_loss and the run's
    # metrics (val_accuracy, val_f1_macro, ...), on the validation data at the epoch's end.
    metrics: dict[str, float]
    improved: tuple[str, ...] = ()  # the metrics whose value is the best so far
    tables: dict[str, list[list[int]]] = field(
        default_factory=dict
    )  # the evaluation's (its confusion matrix)

    @property
    def train_loss(self) -> float:
        return self.metrics["train_loss"]

    @property
    def val_loss(self) -> float | None:
        return self.metrics.get("val_loss")

    @property
    def val_accuracy(self) -> float | None:
        return self.metrics.get("val_accuracy")


@dataclass(frozen=True)
class EvalRecord:
    """An evaluation on the validation data (every `train.eval_every` steps) or on the test data (at
    the end), in eval mode without gradients. Its time is not training time."""

    split: str  # val or test
    step: int
    epoch: int
    # loss and the run's metrics (accuracy, f1_macro, rmse, ...: unprefixed names)
    metrics: dict[str, float]
    elapsed_s: float
    weights: Literal["best", "last"] = "last"  # which weights the test data judged
    weights_epoch: int | None = None  # the epoch whose end-of-epoch weights they are
    tables: dict[str, list[list[int]]] = field(default_factory=dict)  # metrics written as files

    @property
    def loss(self) -> float:
        return self.metrics["loss"]

    @property
    def accuracy(self) -> float | None:
        return self.metrics.get("accuracy")


@dataclass(frozen=True)
class RunFinished:
    steps: int
    epochs: int
    train_time_s: float
    stopped_early: str | None = None  # why early stopping ended the run, if it did
    final_lrs: tuple[float, ...] = ()  # every parameter group's rate at the end
    # What only some runs have, for summary.json: compile_time_s and recompilations (train.compile:
    # the steps that compiled, each new batch shape's first, not counted as training time),
    # scaler_skipped_steps (fp16).
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class CheckpointDue:
    """The loop is at a point it can resume from exactly: an epoch's end (after the scheduler and
    early stopping have moved on), or the end of a step after an interrupt. `state` is the loop's
    position (LoopState.to_dict()); `metrics` the epoch's, for choosing the best checkpoint."""

    # epoch: an epoch's end (final: the run's last); partial: max_steps ended the run mid-epoch;
    # interval: mid-epoch, because a checkpoint is due by time (train.checkpoint_interval)
    reason: Literal["epoch", "final", "partial", "interval", "interrupted"]
    epoch: int
    step: int
    state: dict[str, Any] = field(repr=False)
    improved: tuple[str, ...] = ()  # the epoch's metrics that are the best so far


@dataclass(frozen=True)
class SkippedStep:
    """With `train.on_nonfinite: skip`: a step whose loss or gradients were not finite, not applied."""

    step: int
    epoch: int
    loss: float
    skips_in_a_row: int


Record = RunStarted | StepRecord | EpochRecord | EvalRecord | CheckpointDue | SkippedStep | RunFinished
