"""Resolving the sections that name a class (model, loss, optimizer, scheduler): the name looked up
in its registry, the arguments bound to the class's signature. Every problem goes to `Problems`, so
that one message lists them all.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from optcli.components import losses, optimizers
from optcli.components.registry import Entry, Registry
from optcli.components.signature import bind_arguments, read_signature
from optcli.config.init_and_groups import ParamGroup
from optcli.config.metrics import available_metrics, default_monitor
from optcli.config.schema import (
    SECTION_KEYS,
    NamedSection,
    OneOptimizerSection,
    describe_errors,
)
from optcli.config.spec import WRAPPED_ARGUMENT, Component, DataSpec
from optcli.errors import ConfigError
from optcli.metrics.table import Metric
from optcli.name_matching import did_you_mean

_KEY = re.compile(r"[a-z_][a-z0-9_]*(\.[a-z0-9_]+)*: ")  # a key path, then what is wrong with it


class Problems:
    """Collects problems so that one message lists them all, and notes: what optcli decided that the
    user should hear about, though nothing is wrong."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.notes: list[str] = []

    def add(self, line: str) -> None:
        self.lines.append(line)

    def add_error(self, where: str, error: ConfigError) -> None:
        """A component's problems under its section: 'path: ...' becomes 'data.path: ...'; a problem
        that names no key of its own (a user Dataset's, which starts with the Dataset's name) is the
        section's `name`'s."""
        for problem in error.problems:
            if problem.startswith(where):
                self.lines.append(problem)
            elif _KEY.match(problem):
                self.lines.append(f"{where}.{problem}")
            else:
                self.lines.append(f"{where}.name: {problem}")


def lookup(registry: Registry, name: str, where: str, base_dir: Path, problems: Problems) -> Entry | None:
    """The registry's entry for a name or an import path, or None (with the problem noted)."""
    try:
        return registry.get(name, base_dir)
    except ConfigError as error:
        problems.lines += [f"{where}.name: {problem}" for problem in error.problems]
        return None


def bind_component(
    entry: Entry,
    arguments: dict[str, Any],
    where: str,
    base_dir: Path,
    problems: Problems,
    supplied_by_code: frozenset[str] = frozenset(),
) -> Component | None:
    """The entry's class with the arguments bound to its signature, or None (with the problems noted)."""
    try:
        bound, found = bind_arguments(
            entry.target,
            {**entry.presets, **arguments},
            where=where,
            display_name=display_name(entry.name, entry.target),
            supplied_by_code=supplied_by_code,
            reserved=SECTION_KEYS,
        )
    except (TypeError, ValueError) as error:  # no signature to read (a builtin, say)
        problems.add(f"{where}.name: cannot read the arguments of {entry.name}: {error}")
        return None
    problems.lines += found
    if found:
        return None
    return Component(portable_name(entry.name, base_dir), entry.target, bound, supplied_by_code)


def display_name(name: str, target: Any) -> str:
    return getattr(target, "__name__", name) if ":" not in name else name


def is_subclass(target: Any, classes: tuple[type, ...]) -> bool:
    return isinstance(target, type) and issubclass(target, classes)


def portable_name(name: str, base_dir: Path) -> str:
    """A `file.py:Class` name made absolute, so the recorded config works from the run directory."""
    module_part, separator, attribute = name.rpartition(":")
    if separator and module_part.endswith(".py"):
        return f"{(base_dir / module_part).resolve()}:{attribute}"
    return name


def resolve_loss(
    section: NamedSection | None, data: DataSpec | None, base_dir: Path, problems: Problems
) -> Component | None:
    if section is None:
        if data is None:
            return None
        # Class labels want cross-entropy; real-valued targets want mean squared error.
        section = NamedSection(name="cross_entropy" if data.is_classification else "mse")
    entry = lookup(losses.LOSSES, section.name, "loss", base_dir, problems)
    loss = bind_component(entry, section.arguments, "loss", base_dir, problems) if entry else None
    if loss is not None and loss.arguments.get("reduction") == "none":
        problems.add(
            "loss.reduction: 'none' gives a loss per sample, and training backpropagates one number per "
            "batch; leave reduction out (mean)"
        )
        return None
    return loss


def take_carried(
    entry: Entry, arguments: dict[str, Any], carried: dict[str, Any], where: str, problems: Problems
) -> dict[str, Any]:
    """The section's arguments with those carried over from the class it replaced that this class
    accepts too (lr, weight_decay, ...); the others are dropped, with a note naming them."""
    if not carried:
        return arguments
    try:
        accepted = read_signature(entry.target).parameters
    except (TypeError, ValueError):
        accepted = {}
    kept = {key: value for key, value in carried.items() if key in accepted}
    dropped = sorted(set(carried) - set(kept))
    name = display_name(entry.name, entry.target)
    words = [f"kept {', '.join(kept)}"] if kept else []
    words += [f"dropped {', '.join(dropped)} ({name} does not take them)"] if dropped else []
    problems.notes.append(f"{where}: switching to {name} {' and '.join(words)}")
    return {**kept, **arguments}


def resolve_optimizer(
    section: OneOptimizerSection,
    carried: dict[str, Any],
    base_dir: Path,
    problems: Problems,
    where: str = "optimizer",
) -> Component | None:
    registry = optimizers.OPTIMIZERS
    entry = lookup(registry, section.name, where, base_dir, problems)
    if entry is None:
        return None
    if optimizers.wraps_an_optimizer(entry.target):
        return _resolve_wrapper(entry, section, base_dir, problems, where)
    arguments = take_carried(entry, section.arguments, carried, where, problems)
    component = bind_component(entry, arguments, where, base_dir, problems, registry.supplied_by_code)
    if component is None:
        return None
    default_lr = read_signature(component.target).parameters.get("lr")
    lr = component.arguments.get("lr", getattr(default_lr, "default", None))
    if isinstance(lr, int | float) and lr <= 0:
        problems.add(f"{where}.lr: must be greater than 0, got {lr}")
        return None
    return component


def _resolve_wrapper(
    entry: Entry, section: OneOptimizerSection, base_dir: Path, problems: Problems, where: str
) -> Component | None:
    """An optimizer that wraps another (Lookahead): the wrapped one is a nested section, `optimizer:`,
    built on the parameters first; parameter groups belong to it."""
    arguments = dict(section.arguments)
    wrapped = wrapped_section(section, where, problems)
    arguments.pop(WRAPPED_ARGUMENT, None)
    if section.param_groups:
        problems.add(
            f"{where}.param_groups: give them to the optimizer {entry.name} wraps, in {where}.optimizer"
        )
    inner = (
        resolve_optimizer(wrapped, {}, base_dir, problems, f"{where}.{WRAPPED_ARGUMENT}") if wrapped else None
    )
    component = bind_component(entry, arguments, where, base_dir, problems, frozenset({WRAPPED_ARGUMENT}))
    if inner is None or component is None:
        return None
    return dataclasses.replace(component, inner=inner)


def wrapped_section(
    section: OneOptimizerSection, where: str, problems: Problems
) -> OneOptimizerSection | None:
    """A wrapper optimizer's nested `optimizer:` section, validated."""
    value = section.arguments.get(WRAPPED_ARGUMENT)
    if not isinstance(value, dict):
        problems.add(
            f"{where}.{WRAPPED_ARGUMENT}: {section.name} wraps another optimizer; give it as a section, "
            "e.g. optimizer: {name: adamw, lr: 0.001}"
        )
        return None
    try:
        return OneOptimizerSection.model_validate(value)
    except ValidationError as error:
        problems.lines += describe_errors(error, OneOptimizerSection, f"{where}.{WRAPPED_ARGUMENT}")
        return None


def resolve_param_groups(
    section: OneOptimizerSection, optimizer: Component, problems: Problems, where: str = "optimizer"
) -> tuple[ParamGroup, ...]:
    """Each group's arguments bound to the optimizer's signature (none of them required); a wrapper's
    groups are those of the optimizer it wraps."""
    if optimizer.inner is not None:
        inner_section = wrapped_section(section, where, problems)
        return resolve_param_groups(inner_section, optimizer.inner, problems, where) if inner_section else ()
    groups = []
    for index, group in enumerate(section.param_groups or []):
        bound, found = bind_arguments(
            optimizer.target,
            group.arguments,
            where=f"{where}.param_groups.{index}",
            display_name=display_name(optimizer.name, optimizer.target),
            supplied_by_code=optimizer.supplied_by_code,
            partial=True,
        )
        problems.lines += found
        groups.append(ParamGroup(group.patterns, bound))
    return tuple(groups)


def choose_monitor(
    requested: str | None,
    data: DataSpec,
    metrics: tuple[Metric, ...],
    where: str,
    problems: Problems,
    default: str | None = None,
) -> str | None:
    """The metric to follow: the one requested, else `default` (train.monitor), else the run's
    default; None (and a problem) when the run will not produce it."""
    monitor = requested or default or default_monitor(data.has_validation)
    produced = available_metrics(data.has_validation, metrics)
    if monitor in produced:
        return monitor
    hint = "" if "val_loss" in produced else " (validation metrics need data.val_fraction or data.val)"
    problems.add(
        f"{where}: '{monitor}' is not a metric this run produces{did_you_mean(monitor, produced)}; choose from: "
        f"{', '.join(produced)}{hint}"
    )
    return None
