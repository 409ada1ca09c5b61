"""From a config mapping to a `RunSpec`: every name looked up, every argument checked, every
run-length value filled in, and every problem reported at once, before any real tensor exists.
"""

from __future__ import annotations

import itertools
import math
from pathlib import Path
from typing import Any, Literal

import torch

from optcli.components import models, optimizers, schedulers
from optcli.components.losses import LOSSES
from optcli.components.signature import read_signature
from optcli.config import probes
from optcli.config.data_section import resolve_data
from optcli.config.device import resolve_device
from optcli.config.record import record_config
from optcli.config.resolve_helpers import (
    Problems,
    as_section,
    checked,
    display_name,
    is_subclass,
    lookup,
    portable_name,
)
from optcli.config.schema import (
    SECTION_HELP,
    ClipConfig,
    OutputConfig,
    RawConfig,
    SchedulerOptions,
    TopLevel,
    TrainConfig,
    validate_model,
)
from optcli.config.spec import Component, DataSpec, RunSpec, SchedulerSpec
from optcli.errors import ConfigError
from optcli.train.evaluation import TRAIN_METRICS, VALIDATION_METRICS, better_direction

# Metrics a ReduceLROnPlateau scheduler can follow.


def resolve_config(raw: RawConfig) -> RunSpec:
    """Validate a config mapping completely; raise one ConfigError listing every problem."""
    problems = Problems()
    top, top_problems = validate_model(TopLevel, raw.values, "")
    problems.lines += top_problems
    for section in ("model", "data", "optimizer"):
        if section in raw.values and raw.values[section] is None:  # `model:` with nothing after it
            problems.lines.append(f"{section}: required: {SECTION_HELP[section]}")
    values = raw.values
    train, train_problems = validate_model(TrainConfig, values.get("train"), "train")
    output, output_problems = validate_model(OutputConfig, values.get("output"), "output")
    clip, clip_problems = (
        (None, []) if values.get("clip") is None else validate_model(ClipConfig, values["clip"], "clip")
    )
    problems.lines += train_problems + output_problems + clip_problems

    device = None
    requested_device = values.get("device", "auto")
    if isinstance(requested_device, str):
        try:
            device = resolve_device(requested_device)
        except ConfigError as error:
            problems.add("device", error)
    name = values.get("name")
    if isinstance(name, str) and ("/" in name or name in (".", "..")):
        problems.lines.append(f"name: '{name}' must be usable as a folder name (no '/')")

    data = resolve_data(values.get("data"), raw.base_dir, problems)
    model = _resolve_model(values.get("model"), data, raw.base_dir, problems)
    loss = _resolve_loss(values.get("loss"), data, raw.base_dir, problems)
    optimizer = _resolve_optimizer(values.get("optimizer"), raw.base_dir, problems)

    metrics = available_metrics(data)
    if train is not None and data is not None:
        train = _resolve_train_evaluation(train, data, metrics, problems)

    if model is not None and optimizer is not None:
        problems.add_if(probes.check_optimizer_takes_model(model, optimizer))
    skipping = train is not None and train.on_nonfinite == "skip"
    if skipping and optimizer is not None and optimizers.class_needs_closure(optimizer.target):
        problems.lines.append(
            f"train.on_nonfinite: skip cannot work with {optimizer.name}, which evaluates the loss inside "
            "its own step (before it could be skipped); use stop"
        )
    if model is not None and loss is not None and data is not None:
        problems.add_if(probes.check_forward(model, loss, data.info, data.loader.batch_size))

    epochs = total_steps = 0
    if data is not None and train is not None:
        if data.steps_per_epoch == 0:
            problems.lines.append(
                f"data.batch_size: {data.loader.batch_size} is larger than the {data.info.samples} samples "
                "and drop_last is true, so an epoch has no batches"
            )
        else:
            total_steps = train.epochs * data.steps_per_epoch
            if train.max_steps is not None:
                total_steps = min(total_steps, train.max_steps)
            epochs = math.ceil(total_steps / data.steps_per_epoch)
    scheduler = None
    if values.get("scheduler") is not None and total_steps:
        scheduler = _resolve_scheduler(
            values["scheduler"], epochs, total_steps, optimizer, raw.base_dir, problems, metrics
        )

    if problems.lines:
        raise ConfigError(problems.lines)
    assert top and train and output and data and model and loss and optimizer and device
    name = top.name or raw.default_name
    spec_without_record = dict(
        name=name,
        seed=top.seed,
        deterministic=top.deterministic,
        device=device,
        model=model,
        data=data,
        loss=loss,
        optimizer=optimizer,
        scheduler=scheduler,
        clip=clip,
        train=train,
        output=output,
        epochs=epochs,
        total_steps=total_steps,
    )
    return RunSpec(**spec_without_record, resolved=record_config(spec_without_record))  # type: ignore[arg-type]


# Sections --------------------------------------------------------------------------------------


def _resolve_model(value: Any, data: DataSpec | None, base_dir: Path, problems: Problems) -> Component | None:
    section = as_section(value, "model", problems)
    if section is None:
        return None
    entry = lookup(models.MODELS, section.pop("name"), "model", base_dir, problems)
    if entry is None:
        return None
    try:
        parameters = read_signature(entry.target).parameters
    except (TypeError, ValueError):
        parameters = {}
    if data is None:  # the sizes cannot be known: don't also report them missing
        stand_ins: dict[str, Any] = {"in_features": 1, "out_features": 1, "input_shape": [1, 8, 8]}
        section.update(
            {key: stand_ins[key] for key in models.SIZE_ARGUMENTS if key in parameters and key not in section}
        )
    else:
        sizes = {
            "in_features": data.info.features,
            "out_features": data.info.out_features,
            "input_shape": list(data.info.feature_shape),
        }
        for key in models.SIZE_ARGUMENTS:
            if key in parameters and key not in section:
                section[key] = sizes[key]
    arguments = checked(entry, section, "model", problems)
    if arguments is None or data is None:
        return None
    try:
        models.probe_model(entry.target, arguments)
    except ConfigError as error:
        problems.add("model", error)
        return None
    except Exception as error:
        problems.lines.append(
            f"model: {display_name(entry)} could not be built: {type(error).__name__}: {error}"
        )
        return None
    return Component(portable_name(entry.name, base_dir), entry.target, arguments)


def _resolve_loss(value: Any, data: DataSpec | None, base_dir: Path, problems: Problems) -> Component | None:
    if value is None:
        if data is None:
            return None
        # Class labels want cross-entropy; real-valued targets want mean squared error.
        value = "cross_entropy" if data.info.is_classification else "mse"
    section = as_section(value, "loss", problems)
    if section is None:
        return None
    entry = lookup(LOSSES, section.pop("name"), "loss", base_dir, problems)
    if entry is None:
        return None
    arguments = checked(entry, section, "loss", problems)
    if arguments is None:
        return None
    component = Component(portable_name(entry.name, base_dir), entry.target, arguments)
    try:
        component.build()
    except Exception as error:
        problems.lines.append(f"loss: {display_name(entry)} could not be built: {error}")
        return None
    return component


def _resolve_optimizer(value: Any, base_dir: Path, problems: Problems) -> Component | None:
    section = as_section(value, "optimizer", problems)
    if section is None:
        return None
    entry = lookup(optimizers.OPTIMIZERS, section.pop("name"), "optimizer", base_dir, problems)
    if entry is None:
        return None
    arguments = checked(entry, section, "optimizer", problems, optimizers.SUPPLIED_BY_CODE)
    if arguments is None:
        return None
    lr = arguments.get("lr", read_signature(entry.target).parameters.get("lr"))
    if isinstance(lr, int | float) and lr <= 0:
        problems.lines.append(f"optimizer.lr: must be greater than 0, got {lr}")
        return None
    component = Component(portable_name(entry.name, base_dir), entry.target, arguments)
    try:
        probes.build_on_stand_in(component)
    except Exception as error:
        problems.lines.append(f"optimizer: {display_name(entry)} rejected its arguments: {error}")
        return None
    return component


def available_metrics(data: DataSpec | None) -> tuple[str, ...]:
    """What a run can monitor: the epoch's training loss, and the validation metrics it will have."""
    if data is None or not data.has_validation:
        return TRAIN_METRICS
    return TRAIN_METRICS + (VALIDATION_METRICS if data.is_classification else ("val_loss",))


def default_monitor(metrics: tuple[str, ...]) -> str:
    return "val_loss" if "val_loss" in metrics else "train_loss"


def _unknown_metric(where: str, metric: str, metrics: tuple[str, ...]) -> str:
    hint = "" if "val_loss" in metrics else " (validation metrics need data.val_fraction or data.val)"
    return f"{where}: '{metric}' is not a metric this run produces; choose from: {', '.join(metrics)}{hint}"


def _resolve_train_evaluation(
    train: TrainConfig, data: DataSpec, metrics: tuple[str, ...], problems: Problems
) -> TrainConfig:
    """Early stopping's monitor and mode filled in; evaluation settings that cannot work refused."""
    if train.eval_every is not None and not data.has_validation:
        problems.lines.append(
            "train.eval_every: there is no validation data to evaluate on; set data.val_fraction or data.val"
        )
    stopping = train.early_stopping
    if stopping is None:
        return train
    monitor = stopping.monitor or default_monitor(metrics)
    if monitor not in metrics:
        problems.lines.append(_unknown_metric("train.early_stopping.monitor", monitor, metrics))
    filled = stopping.model_copy(
        update={"monitor": monitor, "mode": stopping.mode or better_direction(monitor)}
    )
    return train.model_copy(update={"early_stopping": filled})


def _resolve_scheduler(
    value: Any,
    epochs: int,
    total_steps: int,
    optimizer: Component | None,
    base_dir: Path,
    problems: Problems,
    metrics: tuple[str, ...],
) -> SchedulerSpec | None:
    section = as_section(value, "scheduler", problems)
    if section is None:
        return None
    options_values = {key: section.pop(key) for key in list(section) if key in SchedulerOptions.model_fields}
    options, option_problems = validate_model(SchedulerOptions, options_values, "scheduler")
    problems.lines += option_problems
    entry = lookup(schedulers.SCHEDULERS, section.pop("name"), "scheduler", base_dir, problems)
    if entry is None or options is None:
        return None
    target = entry.target
    interval: Literal["epoch", "step"] = options.interval or (
        "step" if is_subclass(target, schedulers.STEPPED_PER_BATCH) else "epoch"
    )
    length = total_steps if interval == "step" else epochs

    monitor = None
    if is_subclass(target, (torch.optim.lr_scheduler.ReduceLROnPlateau,)):
        monitor = options.monitor or default_monitor(metrics)
        if monitor not in metrics:
            problems.lines.append(_unknown_metric("scheduler.monitor", monitor, metrics))
        elif "mode" not in section:  # ReduceLROnPlateau's mode follows the metric unless the config sets it
            section["mode"] = better_direction(monitor)
        if interval == "step":
            problems.lines.append(
                "scheduler.interval: ReduceLROnPlateau is stepped once per epoch with the monitored metric; "
                "remove interval: step"
            )
    elif options.monitor is not None:
        problems.lines.append("scheduler.monitor: only ReduceLROnPlateau follows a metric; remove monitor")

    children: tuple[Component, ...] = ()
    if is_subclass(target, schedulers.COMPOSITE):
        inner = section.pop("schedulers", None)
        children_or_none = _resolve_children(inner, section, length, base_dir, problems)
        if children_or_none is None:
            return None
        children = children_or_none
    else:
        _fill_run_length(target, section, length)
    arguments = checked(
        entry,
        section,
        "scheduler",
        problems,
        schedulers.SUPPLIED_BY_CODE | {"schedulers"} if children else schedulers.SUPPLIED_BY_CODE,
    )
    if arguments is None or problems.lines:
        return None
    spec = SchedulerSpec(
        Component(portable_name(entry.name, base_dir), target, arguments),
        interval,
        monitor,
        children,
    )
    if optimizer is not None:
        try:
            spec.build(probes.build_on_stand_in(optimizer))
        except Exception as error:
            problems.lines.append(f"scheduler: {display_name(entry)} rejected its arguments: {error}")
            return None
    return spec


def _resolve_children(
    inner: Any,
    arguments: dict[str, Any],
    length: int,
    base_dir: Path,
    problems: Problems,
) -> tuple[Component, ...] | None:
    """SequentialLR / ChainedScheduler: `schedulers:` is a list of scheduler mappings."""
    if not isinstance(inner, list) or not inner:
        problems.lines.append(
            "scheduler.schedulers: required: a list of scheduler mappings, e.g. [{name: linear}, ...]"
        )
        return None
    # Each inner scheduler of SequentialLR runs from its milestone to the next one (or the run's end).
    milestones = arguments.get("milestones")
    if isinstance(milestones, list) and all(isinstance(m, int) for m in milestones):
        bounds = [0, *milestones, length]
        segment_lengths = [max(1, end - start) for start, end in itertools.pairwise(bounds)]
    else:
        segment_lengths = [length] * len(inner)
    children = []
    for index, child_value in enumerate(inner):
        where = f"scheduler.schedulers.{index}"
        section = as_section(child_value, where, problems)
        if section is None:
            continue
        for key in SchedulerOptions.model_fields:
            if key in section:
                problems.lines.append(f"{where}.{key}: set {key} on the outer scheduler, not on an inner one")
                section.pop(key)
        entry = lookup(schedulers.SCHEDULERS, section.pop("name"), where, base_dir, problems)
        if entry is None:
            continue
        if is_subclass(
            entry.target,
            (*schedulers.COMPOSITE, torch.optim.lr_scheduler.ReduceLROnPlateau),
        ):
            problems.lines.append(f"{where}.name: {entry.name} cannot be nested inside another scheduler")
            continue
        _fill_run_length(entry.target, section, segment_lengths[min(index, len(segment_lengths) - 1)])
        child_arguments = checked(entry, section, where, problems, schedulers.SUPPLIED_BY_CODE)
        if child_arguments is not None:
            children.append(Component(portable_name(entry.name, base_dir), entry.target, child_arguments))
    return tuple(children) if len(children) == len(inner) else None


def _fill_run_length(target: Any, arguments: dict[str, Any], length: int) -> None:
    """OneCycleLR total_steps, CosineAnnealingLR T_max, PolynomialLR total_iters: the run's length."""
    for scheduler_class, key in schedulers.RUN_LENGTH_ARGUMENT.items():
        if is_subclass(target, (scheduler_class,)) and key not in arguments:
            one_cycle_by_epochs = key == "total_steps" and "epochs" in arguments
            if not one_cycle_by_epochs:
                arguments[key] = length
