"""One evaluation's measurement: the loss and every metric of the run, accumulated batch by batch
over the whole split, then read once at its end (the evaluation's one host-device sync point)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch

from optcli.errors import TrainingFailed
from optcli.metrics.builtin import ClassTotals, RegressionTotals, class_scores, confusion_rows

_CLASS_BUILTINS = {"accuracy", "token_accuracy", "top_k_accuracy", "precision", "recall", "f1", "auroc"}


@dataclass(frozen=True)
class Measured:
    """What an evaluation found: `loss` and each metric's column (unprefixed), and the tables written
    as files (the confusion matrix)."""

    values: dict[str, float]
    tables: dict[str, list[list[int]]] = field(default_factory=dict)


class Measurement:
    """Accumulates one split's loss and metrics. `metrics`: the run's (RunSpec.metrics)."""

    def __init__(self, metrics: tuple[Any, ...], device: torch.device, classification: bool) -> None:
        self.metrics = metrics
        self.dtype = torch.float32 if device.type == "mps" else torch.float64
        self.loss = torch.zeros((), device=device, dtype=self.dtype)
        self.samples = 0
        self.classes = ClassTotals(metrics) if classification else None
        self.regression = RegressionTotals(self.dtype) if not classification else None
        # torchmetrics objects, built for this evaluation on the outputs' device; own functions see
        # every output and target at the end, so they are kept (on the CPU) until then.
        self.objects = {m.column: m.measure.build() for m in metrics if m.kind == "class"}
        self.kept: list[tuple[torch.Tensor, torch.Tensor]] | None = (
            [] if any(m.kind == "function" for m in metrics) else None
        )

    def add(self, loss: torch.Tensor, output: Any, targets: torch.Tensor | None, size: int) -> None:
        self.samples += size
        self.loss += loss.to(self.dtype) * size
        if not isinstance(output, torch.Tensor) or targets is None:
            return  # (a model that computes its own loss, without model.output: the loss alone)
        if self.classes is not None:
            scored = class_scores(output, targets)
            if scored is not None:
                self.classes.add(*scored)
        elif output.shape == targets.shape and self.regression is not None:
            self.regression.add(output, targets, size)
        for metric in self.objects.values():
            metric.to(output.device).update(output.detach(), targets)
        if self.kept is not None:
            self.kept.append((output.detach().cpu(), targets.cpu()))

    def result(self) -> Measured:
        """The values (a host copy: the evaluation's sync point)."""
        values = {"loss": self.loss.item() / self.samples}
        tables = {}
        judged_classes = self.classes is not None and self.classes.judged is not None
        judged_values = self.regression is not None and self.regression.values_seen > 0
        regression = self.regression.values() if judged_values and self.regression else {}
        for metric in self.metrics:
            if metric.builtin == "confusion_matrix" and judged_classes and self.classes:
                tables[metric.column] = confusion_rows(self.classes)
            elif metric.builtin in _CLASS_BUILTINS and judged_classes and self.classes:
                values[metric.column] = self.classes.values(metric)
            elif metric.builtin == "perplexity":
                values[metric.column] = math.exp(min(values["loss"], 709.0))  # (exp overflows past 709)
            elif metric.builtin == "bits_per_byte":  # a byte per token: the loss in bits
                values[metric.column] = values["loss"] / math.log(2)
            elif metric.builtin in regression:
                values[metric.column] = regression[metric.builtin]
            elif metric.kind == "class":
                values[metric.column] = _number(metric, self.objects[metric.column].compute())
            elif metric.kind == "function" and self.kept:
                outputs, targets = (torch.cat(parts) for parts in zip(*self.kept, strict=True))
                values[metric.column] = _number(metric, _call(metric, outputs, targets))
        return Measured(values, tables)


def _call(metric: Any, outputs: torch.Tensor, targets: torch.Tensor) -> Any:
    try:
        return metric.measure.build(outputs, targets)
    except Exception as error:
        raise TrainingFailed(
            f"metrics: {metric.measure.name} failed on the evaluation's predictions and targets: "
            f"{type(error).__name__}: {error}"
        ) from None


def _number(metric: Any, value: Any) -> float:
    """A metric's value as one float; a metric that gives more (per-class values) is refused by name."""
    if isinstance(value, torch.Tensor):
        if value.numel() != 1:
            raise TrainingFailed(
                f"metrics: {metric.measure.name} gave {tuple(value.shape)} values, not one number; "
                "choose its averaged form (e.g. average: macro)"
            )
        return float(value.item())
    try:
        return float(value)
    except (TypeError, ValueError):
        raise TrainingFailed(
            f"metrics: {metric.measure.name} returned {type(value).__name__}, not a number"
        ) from None
