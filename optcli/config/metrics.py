"""The metrics a run can monitor (ReduceLROnPlateau, early stopping, the best checkpoint) and which
way is better: one place for these facts."""

from __future__ import annotations

from typing import Literal

TRAIN_METRICS = ("train_loss",)  # the epoch's mean training loss: every run has it
# On validation data, by the kind of targets: class labels, or real values.
CLASSIFICATION_METRICS = ("val_loss", "val_accuracy")
REGRESSION_METRICS = ("val_loss", "val_rmse", "val_mae", "val_r2")
VALIDATION_METRICS = tuple(dict.fromkeys(CLASSIFICATION_METRICS + REGRESSION_METRICS))
HIGHER_IS_BETTER = ("accuracy", "r2")  # metric names end with these; the others are errors or losses


def better_direction(metric: str) -> Literal["min", "max"]:
    """Accuracies and r2 are better higher; losses and errors lower."""
    return "max" if metric.endswith(HIGHER_IS_BETTER) else "min"


def validation_metrics(is_classification: bool, judged: bool = True) -> tuple[str, ...]:
    """What an evaluation reports. `judged`: the model's output can be compared with the targets (a
    model that computes its own loss gives only that, unless model.output names its predictions)."""
    if not judged:
        return ("val_loss",)
    return CLASSIFICATION_METRICS if is_classification else REGRESSION_METRICS


def available_metrics(has_validation: bool, is_classification: bool, judged: bool = True) -> tuple[str, ...]:
    """What a run produces to monitor: the training loss, and the validation metrics it will have."""
    if not has_validation:
        return TRAIN_METRICS
    return TRAIN_METRICS + validation_metrics(is_classification, judged)


def default_monitor(has_validation: bool) -> str:
    """What a run watches unless told otherwise: the validation loss when there is validation data."""
    return "val_loss" if has_validation else "train_loss"
