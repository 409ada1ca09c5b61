"""The scheduler section: the class looked up, its interval and monitor settled, SequentialLR's and
ChainedScheduler's inner schedulers resolved, and the run's length filled in where a class takes one."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

from torch.optim import lr_scheduler

from optcli.components import schedulers
from optcli.config.metrics import better_direction
from optcli.config.schema import NamedSection, SchedulerSection
from optcli.config.sections import Problems, bind_component, choose_monitor, is_subclass, lookup, take_carried
from optcli.config.spec import Component, DataSpec, SchedulerSpec
from optcli.metrics.table import Metric


def resolve_scheduler(
    section: SchedulerSection,
    carried: dict[str, Any],
    run_length: dict[str, int],
    data: DataSpec | None,
    base_dir: Path,
    problems: Problems,
    where: str = "scheduler",
    metrics: tuple[Metric, ...] = (),
    train_monitor: str | None = None,
) -> SchedulerSpec | None:
    """The scheduler, its interval and monitor settled, and the run's length filled in where its
    class takes one (`where`: the section's key; a part's own is optimizer.parts.NAME.scheduler) (`run_length` holds the run's steps and epochs)."""
    entry = lookup(schedulers.SCHEDULERS, section.name, where, base_dir, problems)
    if entry is None:
        return None
    target, arguments = entry.target, take_carried(entry, section.arguments, carried, where, problems)
    interval = section.interval or ("step" if is_subclass(target, schedulers.STEPPED_PER_BATCH) else "epoch")
    length = run_length[interval]
    monitor = _plateau_monitor(
        section, target, interval, data, (metrics, train_monitor), arguments, problems, where
    )
    children: tuple[Component, ...] = ()
    filled: list[str] = []
    supplied = schedulers.SCHEDULERS.supplied_by_code
    if is_subclass(target, schedulers.COMPOSITE):
        inner = _resolve_children(
            section.schedulers, arguments.get("milestones"), length, base_dir, problems, filled, where
        )
        if inner is None:
            return None
        children, supplied = inner, supplied | {"schedulers"}
    elif section.schedulers is not None:
        problems.add(f"{where}.schedulers: only SequentialLR and ChainedScheduler take inner schedulers")
        return None
    else:
        filled += [key for key in [fill_run_length(target, arguments, length)] if key]
    component = bind_component(entry, arguments, where, base_dir, problems, supplied)
    if component is None or problems.lines:
        return None
    return SchedulerSpec(component, interval, monitor, children, tuple(filled))


def _plateau_monitor(
    section: SchedulerSection,
    target: Any,
    interval: str,
    data: DataSpec | None,
    monitored: tuple[tuple[Metric, ...], str | None],
    arguments: dict[str, Any],
    problems: Problems,
    where: str,
) -> str | None:
    """ReduceLROnPlateau's metric (its mode follows the metric unless the config sets it)."""
    if not is_subclass(target, (lr_scheduler.ReduceLROnPlateau,)):
        if section.monitor is not None:
            problems.add(f"{where}.monitor: only ReduceLROnPlateau follows a metric; remove monitor")
        return None
    if interval == "step":
        problems.add(
            f"{where}.interval: ReduceLROnPlateau is stepped once per epoch with the monitored metric; "
            "remove interval: step"
        )
    if data is None:
        return None
    metrics, train_monitor = monitored  # the run's metrics, and train.monitor (the default)
    monitor = choose_monitor(section.monitor, data, metrics, f"{where}.monitor", problems, train_monitor)
    if monitor is not None and "mode" not in arguments:
        arguments["mode"] = better_direction(monitor, metrics)
    return monitor


def _resolve_children(
    inner: list[NamedSection] | None,
    milestones: Any,
    length: int,
    base_dir: Path,
    problems: Problems,
    filled: list[str],
    section_key: str,
) -> tuple[Component, ...] | None:
    """SequentialLR / ChainedScheduler: `schedulers:` is a list of scheduler mappings."""
    if not inner:
        problems.add(
            f"{section_key}.schedulers: required: a list of scheduler mappings, e.g. [{{name: linear}}, ...]"
        )
        return None
    # Each inner scheduler of SequentialLR runs from its milestone to the next one (or the run's end).
    if isinstance(milestones, list) and all(isinstance(m, int) for m in milestones):
        bounds = [0, *milestones, length]
        segment_lengths = [max(1, end - start) for start, end in itertools.pairwise(bounds)]
    else:
        segment_lengths = [length] * len(inner)
    children = []
    for index, child in enumerate(inner):
        where = f"{section_key}.schedulers.{index}"
        arguments = child.arguments
        for key in ("interval", "monitor"):
            if arguments.pop(key, None) is not None:
                problems.add(f"{where}.{key}: set {key} on the outer scheduler, not on an inner one")
        entry = lookup(schedulers.SCHEDULERS, child.name, where, base_dir, problems)
        if entry is None:
            continue
        if is_subclass(entry.target, (*schedulers.COMPOSITE, lr_scheduler.ReduceLROnPlateau)):
            problems.add(f"{where}.name: {entry.name} cannot be nested inside another scheduler")
            continue
        filled_key = fill_run_length(
            entry.target, arguments, segment_lengths[min(index, len(segment_lengths) - 1)]
        )
        if filled_key:
            filled.append(f"schedulers.{index}.{filled_key}")
        supplied = schedulers.SCHEDULERS.supplied_by_code
        component = bind_component(entry, arguments, where, base_dir, problems, supplied)
        if component is not None:
            children.append(component)
    return tuple(children) if len(children) == len(inner) else None


def fill_run_length(target: Any, arguments: dict[str, Any], length: int) -> str | None:
    """OneCycleLR total_steps, CosineAnnealingLR T_max, PolynomialLR total_iters: the run's length;
    the key filled in, if any (a resume that changes the run's length fills it in anew)."""
    for scheduler_class, key in schedulers.RUN_LENGTH_ARGUMENT.items():
        if is_subclass(target, (scheduler_class,)) and key not in arguments:
            one_cycle_by_epochs = key == "total_steps" and "epochs" in arguments
            if not one_cycle_by_epochs:
                arguments[key] = length
                return key
    return None
