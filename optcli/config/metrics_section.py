"""`metrics:`: the metrics an evaluation reports, each a built-in name, a torchmetrics class (or any
class with update and compute) by import path, or a function of one's own, bound and checked here
before anything runs (metrics/table.py holds the facts about each)."""

from __future__ import annotations

import importlib.util
import inspect
import re
from pathlib import Path
from typing import Any

from optcli.components.registry import import_object
from optcli.components.signature import bind_arguments
from optcli.config.sections import Problems, portable_name
from optcli.config.spec import Component, DataSpec
from optcli.errors import ConfigError
from optcli.extras import needs
from optcli.metrics.table import (
    BUILTINS,
    Kind,
    Metric,
    builtin_for_column,
    builtin_metric,
    default_metrics,
    judges,
)
from optcli.name_matching import unknown_name_message

# Keys of a metric's mapping that are optcli's own, not the metric's arguments.
_OWN_KEYS = ("name", "column", "higher_is_better")
_COLUMN = re.compile(r"[a-z][a-z0-9_]*")


def resolve_metrics(
    entries: list[Any] | None, data: DataSpec | None, base_dir: Path, problems: Problems
) -> tuple[Metric, ...]:
    """The run's metrics: those named, or the defaults for its kind of targets (accuracy; rmse, mae
    and r2). Broken data (reported already) leaves the kind unknown: nothing is checked against it."""
    if data is None:
        return ()
    if entries is None:
        return default_metrics(data_kind(data), data.info.tokenizer == "bytes")
    metrics: list[Metric] = []
    for index, entry in enumerate(entries):
        where = f"metrics.{index}"
        metric = _resolve_one(entry, data, base_dir, where, problems)
        if metric is None:
            continue
        if any(other.column == metric.column for other in metrics):
            problems.add(f"{where}: a second metric with the column '{metric.column}'; name each once")
            continue
        metrics.append(metric)
    return tuple(metrics)


def _resolve_one(entry: Any, data: DataSpec, base_dir: Path, where: str, problems: Problems) -> Metric | None:
    if isinstance(entry, str):
        name, arguments = entry, {}
    elif isinstance(entry, dict) and isinstance(entry.get("name"), str):
        name, arguments = entry["name"], {key: value for key, value in entry.items() if key != "name"}
    else:
        problems.add(
            f"{where}: a metric's name (f1), or a mapping with its name and arguments ({{name: f1, average: macro}})"
        )
        return None
    if ":" in name:
        return _resolve_imported(name, arguments, data, base_dir, where, problems)
    own = [key for key in ("column", "higher_is_better") if key in arguments]
    if own:
        problems.add(f"{where}.{own[0]}: a built-in metric has its own column and direction; remove {own[0]}")
        return None
    shorthand = builtin_for_column(name) if name not in BUILTINS else None
    if shorthand is not None and not arguments:  # a column's name (f1_macro, top5_accuracy) names its metric
        name, arguments = shorthand.builtin or name, dict(shorthand.arguments)
    if name not in BUILTINS:
        problems.add(
            f"{where}: {unknown_name_message('metric', name, BUILTINS)}; or a torchmetrics class "
            "('torchmetrics.classification:MulticlassCohenKappa') or a function ('metrics.py:my_metric')"
        )
        return None
    facts = BUILTINS[name]
    kind = data_kind(data)
    if not judges(facts, kind):
        problems.add(
            f"{where}: {name} judges {' or '.join(_KIND_WORDS[k] for k in facts.kinds)}, and this run's targets "
            f"are {_KIND_WORDS[kind]}; choose from: {', '.join(n for n, f in BUILTINS.items() if judges(f, kind))}"
        )
        return None
    if name == "bits_per_byte" and data.info.tokenizer != "bytes":
        problems.add(f"{where}: bits_per_byte is the loss per byte, for byte tokens (data.tokenizer: bytes)")
        return None
    bound, found = bind_arguments(facts.signature, arguments, where=where, display_name=name)
    problems.lines += found
    if found:
        return None
    metric = builtin_metric(name, bound)
    k, classes = dict(metric.arguments).get("k"), data.info.classes
    if k is not None and classes and (k < 1 or k >= classes):
        problems.add(
            f"{where}.k: {k} with {classes} classes: every sample would count as right (or none); "
            f"choose from 1 to {classes - 1}"
        )
        return None
    return metric


_KIND_WORDS = {
    "classification": "class labels",
    "sequence": "a token per position",
    "regression": "real values",
}


def data_kind(data: DataSpec) -> Kind:
    if data.info.sequence_length is not None:
        return "sequence"
    return "classification" if data.is_classification else "regression"


def _resolve_imported(
    name: str, arguments: dict[str, Any], data: DataSpec, base_dir: Path, where: str, problems: Problems
) -> Metric | None:
    """A class with update and compute (torchmetrics'), or a function of predictions and targets."""
    if name.startswith("torchmetrics") and importlib.util.find_spec("torchmetrics") is None:
        problems.add(f"{where}.name: {name} {needs('metrics')}")
        return None
    try:
        target = import_object(name, base_dir)
    except ConfigError as error:
        problems.lines += [f"{where}.name: {line}" for line in error.problems]
        return None
    own = {key: arguments.pop(key) for key in list(arguments) if key in _OWN_KEYS}
    is_class = isinstance(target, type)
    if is_class and not all(callable(getattr(target, method, None)) for method in ("update", "compute")):
        problems.add(
            f"{where}.name: {name} is a class without update() and compute(); a metric class needs both"
        )
        return None
    if not is_class and not callable(target):
        problems.add(f"{where}.name: {name} is neither a metric class nor a function")
        return None
    supplied = frozenset() if is_class else frozenset(list(inspect.signature(target).parameters)[:2])
    if is_class and "num_classes" in inspect.signature(target).parameters and data.info.classes:
        arguments.setdefault("num_classes", data.info.classes)  # (the data knows it)
    shown = getattr(target, "__name__", name)
    bound, found = bind_arguments(
        target, arguments, where=where, display_name=shown, supplied_by_code=supplied
    )
    problems.lines += found
    higher = own.get("higher_is_better", getattr(target, "higher_is_better", None))
    if not isinstance(higher, bool):
        problems.add(
            f"{where}.higher_is_better: say which way {shown} is better (true or false); "
            "ranking, monitors and targets need it"
        )
    column = own.get("column", _snake_case(shown))
    if not isinstance(column, str) or not _COLUMN.fullmatch(column):
        problems.add(f"{where}.column: '{column}' is not a column name (lower-case letters, digits and _)")
    if found or not isinstance(higher, bool) or not isinstance(column, str) or not _COLUMN.fullmatch(column):
        return None
    if is_class:
        # A torchmetrics Metric takes **kwargs and checks them itself when made: made once here, on
        # the CPU, so that a misspelt argument is a config error and not a failure at the first evaluation.
        try:
            target(**bound)
        except Exception as error:
            problems.add(f"{where}: {shown} refused its arguments: {type(error).__name__}: {error}")
            return None
    component = Component(portable_name(name, base_dir), target, bound, supplied)
    return Metric(column, higher, shown, measure=component, kind="class" if is_class else "function")


def _snake_case(name: str) -> str:
    """MulticlassCohenKappa -> multiclass_cohen_kappa."""
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name).lower()
