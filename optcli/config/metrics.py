"""The metrics a run can monitor (ReduceLROnPlateau, early stopping, the best checkpoint) and which
way is better: one place for these facts."""

from __future__ import annotations

from typing import Literal

TRAIN_METRICS = ("train_loss",)  # the epoch's mean training loss: every run has it
VALIDATION_METRICS = ("val_loss", "val_accuracy")  # with validation data; accuracy for class labels only


def better_direction(metric: str) -> Literal["min", "max"]:
    """Accuracies are better higher, losses lower."""
    return "max" if metric.endswith("accuracy") else "min"


def available_metrics(has_validation: bool, is_classification: bool) -> tuple[str, ...]:
    """What a run produces to monitor: the training loss, and the validation metrics it will have."""
    if not has_validation:
        return TRAIN_METRICS
    return TRAIN_METRICS + (VALIDATION_METRICS if is_classification else ("val_loss",))


def default_monitor(has_validation: bool) -> str:
    """What a run watches unless told otherwise: the validation loss when there is validation data."""
    return "val_loss" if has_validation else "train_loss"
