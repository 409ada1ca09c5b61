"""The metric table: every fact about a metric in one place. A metric named in `metrics:` is bound
here to its column, its direction and the words reports use; ranking, verdicts, the live table,
monitors, targets and the CLI's help read them from here.

Built-in metrics are computed by optcli itself, exactly (metrics/builtin.py); a torchmetrics class
or a function of one's own is named by import path and measured by metrics/measure.py.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

Kind = Literal["classification", "sequence", "regression"]  # the targets a metric judges
# (sequence: a class per position, a language model's next tokens; class metrics judge them too.)
Average = Literal["macro", "micro", "weighted"]


@dataclass(frozen=True)
class Builtin:
    """A metric optcli computes itself. `signature` holds its arguments and their defaults, so that
    they are checked like any class's; `column` names its column from them."""

    higher_is_better: bool
    kinds: tuple[Kind, ...]
    words: str  # "validation F1 ({average})": filled in with the arguments
    column: Callable[..., str]
    signature: Callable[..., None]
    percent: bool = False  # shown as a percentage
    file: str | None = None  # written as this file at every evaluation, not as a column


def _no_arguments() -> None:
    """(takes no arguments)"""


def _top_k(k: int = 5) -> None:
    """k: a sample counts as right when its class is among the k highest outputs."""


def _averaged(average: Average = "macro") -> None:
    """average: macro (each class alike), micro (each sample alike) or weighted (by class support)."""


BUILTINS: dict[str, Builtin] = {
    "accuracy": Builtin(True, ("classification",), "accuracy", lambda: "accuracy", _no_arguments, True),
    "top_k_accuracy": Builtin(
        True, ("classification",), "top-{k} accuracy", lambda k=5: f"top{k}_accuracy", _top_k, True
    ),
    "f1": Builtin(
        True, ("classification",), "F1 ({average})", lambda average="macro": f"f1_{average}", _averaged
    ),
    "precision": Builtin(
        True,
        ("classification",),
        "precision ({average})",
        lambda average="macro": f"precision_{average}",
        _averaged,
    ),
    "recall": Builtin(
        True,
        ("classification",),
        "recall ({average})",
        lambda average="macro": f"recall_{average}",
        _averaged,
    ),
    "auroc": Builtin(True, ("classification",), "AUROC (one-vs-rest, macro)", lambda: "auroc", _no_arguments),
    "confusion_matrix": Builtin(
        False,
        ("classification",),
        "confusion matrix",
        lambda: "confusion_matrix",
        _no_arguments,
        file="confusion_matrix.csv",
    ),
    "perplexity": Builtin(False, ("classification",), "perplexity", lambda: "perplexity", _no_arguments),
    "bits_per_byte": Builtin(False, ("sequence",), "bits per byte", lambda: "bits_per_byte", _no_arguments),
    "token_accuracy": Builtin(
        True, ("classification",), "token accuracy", lambda: "token_accuracy", _no_arguments, True
    ),
    "rmse": Builtin(False, ("regression",), "RMSE", lambda: "rmse", _no_arguments),
    "mae": Builtin(False, ("regression",), "MAE", lambda: "mae", _no_arguments),
    "r2": Builtin(True, ("regression",), "R²", lambda: "r2", _no_arguments),
}
# What an evaluation reports when `metrics:` names none, by the kind of targets.
DEFAULTS: dict[Kind, tuple[str, ...]] = {
    "classification": ("accuracy",),
    "sequence": ("perplexity", "bits_per_byte", "token_accuracy"),
    "regression": ("rmse", "mae", "r2"),
}


def judges(facts: Builtin, kind: Kind) -> bool:
    """Whether a built-in applies to targets of `kind` (class metrics apply to sequences too)."""
    return kind in facts.kinds or (kind == "sequence" and "classification" in facts.kinds)


@dataclass(frozen=True)
class Metric:
    """One metric of a run, bound: the column it fills (unprefixed: `f1_macro`, reported as
    `val_f1_macro` and `test_f1_macro`), which way is better, and how it is measured."""

    column: str
    higher_is_better: bool
    words: str  # "F1 (macro)"
    builtin: str | None = None  # a BUILTINS name, or None for one measured by `measure`
    arguments: tuple[tuple[str, Any], ...] = ()  # a built-in's (k, average), as bound
    # A torchmetrics class or one's own function: metrics/measure.py builds and calls it.
    measure: Any = None  # config.spec.Component
    kind: Literal["class", "function"] | None = None  # which of the two `measure` is
    percent: bool = False
    file: str | None = None

    @property
    def is_column(self) -> bool:
        return self.file is None

    def record(self) -> str | dict[str, Any]:
        """As config.yaml records it: a built-in's name alone when it takes no arguments."""
        if self.builtin is not None:
            return {"name": self.builtin, **dict(self.arguments)} if self.arguments else self.builtin
        recorded = self.measure.record()
        return {**recorded, "column": self.column, "higher_is_better": self.higher_is_better}


def builtin_metric(name: str, arguments: dict[str, Any]) -> Metric:
    """A built-in bound to its (checked) arguments."""
    facts = BUILTINS[name]
    arguments = {**_defaults(facts), **arguments}  # every default filled in, as config.yaml records it
    return Metric(
        column=facts.column(**arguments),
        higher_is_better=facts.higher_is_better,
        words=facts.words.format(**arguments),
        builtin=name,
        arguments=tuple(arguments.items()),
        percent=facts.percent,
        file=facts.file,
    )


def _defaults(facts: Builtin) -> dict[str, Any]:
    return {
        name: parameter.default
        for name, parameter in inspect.signature(facts.signature).parameters.items()
        if parameter.default is not inspect.Parameter.empty
    }


def default_metrics(kind: Kind, byte_tokens: bool = False) -> tuple[Metric, ...]:
    """What an evaluation reports when `metrics:` names none (bits per byte only for byte tokens)."""
    return tuple(
        builtin_metric(name, {}) for name in DEFAULTS[kind] if name != "bits_per_byte" or byte_tokens
    )


def builtin_for_column(column: str) -> Metric | None:
    """The built-in metric that fills `column` (f1_macro: f1 with average macro), for what knows a
    column's name only (a suite's target); None for any other column."""
    top_k = re.fullmatch(r"top(\d+)_accuracy", column)
    if top_k:
        return builtin_metric("top_k_accuracy", {"k": int(top_k[1])})
    name, _, average = column.rpartition("_")
    if name in ("f1", "precision", "recall") and average in ("macro", "micro", "weighted"):
        return builtin_metric(name, {"average": average})
    if column in BUILTINS and column not in ("top_k_accuracy", "f1", "precision", "recall"):
        found = builtin_metric(column, {})
        return found if found.is_column else None
    return None


def find_metric(name: str, metrics: tuple[Metric, ...] = ()) -> Metric | None:
    """The metric behind a name, with or without its split's prefix (val_f1_macro, test_auroc, r2):
    one of the run's `metrics`, else the built-in whose column it is; None for any other name (a loss)."""
    column = name.split("_", 1)[1] if name.startswith(("val_", "test_")) else name
    return next((m for m in metrics if m.column == column and m.is_column), None) or builtin_for_column(
        column
    )


def format_metric(column: str, value: float | None, metrics: tuple[Metric, ...] = (), digits: int = 4) -> str:
    """A value as people read it: a percentage for accuracies, else `digits` significant digits.
    `column` may carry its split's prefix (val_f1_macro)."""
    if value is None:
        return "-"
    metric = find_metric(column, metrics)
    return f"{value:.2%}" if metric is not None and metric.percent else f"{value:.{digits}g}"
