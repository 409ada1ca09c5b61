"""Judging the model on data it does not train on, and deciding when training should stop early."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from optcli.components.forward import Forward
from optcli.config.schema import EarlyStoppingConfig
from optcli.data.batches import Batches
from optcli.data.loader import batch_length
from optcli.metrics.measure import Measured, Measurement
from optcli.metrics.table import Metric

if TYPE_CHECKING:
    from optcli.train.session import Session


def evaluate(
    model: torch.nn.Module,
    batches: Batches,
    loss_function: torch.nn.Module,
    forward: Forward,
    metrics: tuple[Metric, ...],
    classification: bool,
) -> Measured:
    """The loss (each batch's mean loss weighted by its size) and the run's metrics over every sample
    of the split, in eval mode (dropout off) without gradients."""
    was_training = model.training
    model.eval()
    measurement = Measurement(metrics, batches.device, classification)
    with torch.no_grad():
        for batch in batches.epoch():
            loss, judged, targets = forward(model, loss_function, batch)
            measurement.add(loss, judged, targets, batch_length(batch))
    model.train(was_training)
    return measurement.result()  # Note: a host-device sync point, once per evaluation.


def evaluate_split(session: Session, batches: Batches) -> Measured:
    """A run's evaluation of one split, as training and `optcli evaluate` both make it: the model as
    scored, the run's loss, forward pass and metrics."""
    spec = session.spec
    return evaluate(
        session.evaluated,
        batches,
        session.loss_function,
        spec.forward,
        spec.evaluated_metrics,
        spec.data.is_classification,
    )


@dataclass
class EarlyStopper:
    """Counts epochs without an improvement of more than `min_delta` in the monitored metric."""

    monitor: str
    patience: int
    min_delta: float
    mode: str  # min or max
    best: float | None = None
    best_epoch: int = 0
    epochs_without_improvement: int = 0

    @classmethod
    def from_config(cls, config: EarlyStoppingConfig, saved: dict[str, Any] | None = None) -> EarlyStopper:
        """A fresh stopper, or one with the counters a checkpoint saved."""
        assert config.monitor is not None and config.mode is not None  # filled in when the config resolves
        stopper = cls(config.monitor, config.patience, config.min_delta, config.mode)
        if saved:
            stopper.best, stopper.best_epoch = saved["best"], saved["best_epoch"]
            stopper.epochs_without_improvement = saved["epochs_without_improvement"]
        return stopper

    def to_dict(self) -> dict[str, Any]:
        return {
            "best": self.best,
            "best_epoch": self.best_epoch,
            "epochs_without_improvement": self.epochs_without_improvement,
        }

    def should_stop(self, value: float, epoch: int) -> bool:
        improved = self.best is None or (
            value < self.best - self.min_delta if self.mode == "min" else value > self.best + self.min_delta
        )
        if improved and math.isfinite(value):
            self.best, self.best_epoch, self.epochs_without_improvement = value, epoch, 0
        else:
            self.epochs_without_improvement += 1
        return self.epochs_without_improvement >= self.patience

    def reason(self, epoch: int) -> str:
        return (
            f"{self.monitor} did not improve by more than {self.min_delta:g} for {self.patience} epochs "
            f"(best {self.best:.6g} at epoch {self.best_epoch}); stopped after epoch {epoch}"
        )
