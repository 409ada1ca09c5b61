"""What the training loop produces. Sinks (CSV files, the terminal, the summary) consume these."""

from __future__ import annotations

from dataclasses import dataclass


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


@dataclass(frozen=True)
class EpochRecord:
    """One finished epoch (or the part of it that ran, when max_steps ended it early)."""

    epoch: int
    step: int
    train_loss: float  # mean of the epoch's step losses
    lr: float  # the learning rate the epoch's last step used
    elapsed_s: float


@dataclass(frozen=True)
class RunFinished:
    steps: int
    epochs: int
    train_time_s: float


Record = RunStarted | StepRecord | EpochRecord | RunFinished
