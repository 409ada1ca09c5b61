"""Judging the model on data it does not train on, and deciding when training should stop early."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

from optcli.components.forward import Forward
from optcli.config.schema import EarlyStoppingConfig
from optcli.data.batches import Batches
from optcli.data.loader import batch_length


def evaluate(
    model: torch.nn.Module,
    batches: Batches,
    loss_function: torch.nn.Module,
    forward: Forward,
    classification: bool,
) -> dict[str, float]:
    """The metrics over every sample, in eval mode (dropout off) without gradients: `loss` (each
    batch's mean loss weighted by its size); `accuracy` for class labels; `rmse`, `mae` and `r2` for
    real-valued targets (r2 averaged over the target's values, as scikit-learn's default does)."""
    was_training = model.training
    model.eval()
    totals = _Totals(batches.device)
    with torch.no_grad():
        for batch in batches.epoch():
            loss, judged, targets = forward(model, loss_function, batch)
            totals.add(loss, judged, targets, batch_length(batch), classification)
    model.train(was_training)
    return totals.metrics(classification)  # Note: a host-device sync point, once per evaluation.


class _Totals:
    """Sums kept on the device, in float64 where the device has it, until the evaluation's end."""

    def __init__(self, device: torch.device) -> None:
        self.dtype = torch.float32 if device.type == "mps" else torch.float64
        zero = torch.zeros((), device=device, dtype=self.dtype)
        self.samples = 0
        self.loss = zero.clone()
        self.correct = zero.clone()
        self.judged = 0  # samples whose output could be judged (a from_model loss may have no output)
        # Regression: squared and absolute errors, and the targets' sums for their variance.
        self.squared: torch.Tensor = zero.clone()
        self.absolute = zero.clone()
        self.target_sum: torch.Tensor | float = 0.0
        self.target_square_sum: torch.Tensor | float = 0.0
        self.values = 0

    def add(
        self, loss: torch.Tensor, output: Any, targets: torch.Tensor | None, size: int, classification: bool
    ) -> None:
        self.samples += size
        self.loss += loss.to(self.dtype) * size
        if not isinstance(output, torch.Tensor) or targets is None:
            return
        if classification and output.dim() == 2 and output.shape[1] > 1:
            self.correct += (output.argmax(dim=1) == targets).sum()
            self.judged += size
        elif classification and output.shape == targets.shape:  # one logit per sample: 1 when above 0
            self.correct += ((output > 0) == (targets > 0.5)).sum()
            self.judged += size
        elif not classification and output.shape == targets.shape:
            error = (output - targets).to(self.dtype).reshape(size, -1)
            self.squared = self.squared + error.square().sum(dim=0)  # per target value, for r2
            self.absolute += error.abs().sum()
            flat = targets.to(self.dtype).reshape(size, -1)
            self.target_sum = self.target_sum + flat.sum(dim=0)
            self.target_square_sum = self.target_square_sum + flat.square().sum(dim=0)
            self.values += targets.numel()

    def metrics(self, classification: bool) -> dict[str, float]:
        found = {"loss": self.loss.item() / self.samples}
        if classification and self.judged:
            found["accuracy"] = self.correct.item() / self.judged
        if not classification and self.values:
            n = self.samples
            spread = torch.as_tensor(self.target_square_sum) - torch.as_tensor(self.target_sum).square() / n
            explained = [
                1 - sse / sst
                for sse, sst in zip(self.squared.tolist(), spread.tolist(), strict=True)
                if sst > 0
            ]
            found["rmse"] = math.sqrt(self.squared.sum().item() / self.values)
            found["mae"] = self.absolute.item() / self.values
            found["r2"] = math.fsum(explained) / len(explained) if explained else math.nan
        return found


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
