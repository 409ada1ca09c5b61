"""Judging the model on data it does not train on, and deciding when training should stop early."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

from optcli.config.parts import pick_output
from optcli.config.schema import EarlyStoppingConfig
from optcli.data.batches import InMemoryBatches


def evaluate(
    model: torch.nn.Module,
    batches: InMemoryBatches,
    loss_function: torch.nn.Module,
    classification: bool,
    output_key: str | int | None = None,
) -> tuple[float, float | None]:
    """The mean loss over every sample (each batch's mean loss weighted by its size), and the
    accuracy for class labels; in eval mode (dropout off), without gradients."""
    was_training = model.training
    model.eval()
    device = batches.inputs.device
    total_loss = torch.zeros((), device=device, dtype=torch.float64)
    correct = torch.zeros((), device=device, dtype=torch.long)
    with torch.no_grad():
        for inputs, targets in batches.epoch():
            output = pick_output(model(inputs), output_key)
            total_loss += loss_function(output, targets).double() * len(targets)
            if classification and output.dim() == 2 and output.shape[1] > 1:
                correct += (output.argmax(dim=1) == targets).sum()
            elif classification and output.shape == targets.shape:  # one logit per sample: 1 when above 0
                correct += ((output > 0) == (targets > 0.5)).sum()
    model.train(was_training)
    # Note: a host-device sync point, once per evaluation.
    loss = total_loss.item() / batches.samples
    return loss, (correct.item() / batches.samples if classification else None)


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
