"""The metrics a run produces, which it can monitor (ReduceLROnPlateau, early stopping, the best
checkpoint), and which way is better. The facts about each metric live in metrics/table.py."""

from __future__ import annotations

from typing import Literal

from optcli.metrics.table import Metric, find_metric

TRAIN_METRICS = ("train_loss",)  # the epoch's mean training loss: every run has it


def validation_metrics(metrics: tuple[Metric, ...], judged: bool = True) -> tuple[str, ...]:
    """The columns an evaluation fills: val_loss, and a column per metric. `judged`: the model's output
    can be compared with the targets (a model that computes its own loss gives only that, unless
    model.output names its predictions)."""
    if not judged:
        return ("val_loss",)
    return ("val_loss", *(f"val_{metric.column}" for metric in metrics if metric.is_column))


def available_metrics(
    has_validation: bool, metrics: tuple[Metric, ...], judged: bool = True
) -> tuple[str, ...]:
    """What a run produces to monitor: the training loss, and the validation metrics it will have."""
    if not has_validation:
        return TRAIN_METRICS
    return TRAIN_METRICS + validation_metrics(metrics, judged)


def default_monitor(has_validation: bool) -> str:
    """What a run watches unless told otherwise: the validation loss when there is validation data."""
    return "val_loss" if has_validation else "train_loss"


def better_direction(name: str, metrics: tuple[Metric, ...] = ()) -> Literal["min", "max"]:
    """Which way `name` (train_loss, val_loss, val_f1_macro, test_...) is better: a run's own metric
    says; a built-in column is looked up by name; losses, errors and anything else are lower-better."""
    metric = find_metric(name, metrics)
    return "max" if metric is not None and metric.higher_is_better else "min"
