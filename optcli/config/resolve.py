"""From a config mapping to a `RunSpec`: one validation of the file, every name looked up and its
arguments bound to the real signature, the run's length filled in, one dry run on the meta device,
and every problem reported at once, before any real tensor exists.
"""

from __future__ import annotations

import dataclasses
import math

from optcli.components import optimizers
from optcli.components.forward import ModelLoss
from optcli.components.losses import BINARY_LOSSES
from optcli.config.data_section import resolve_data
from optcli.config.device import resolve_device
from optcli.config.dry_run import dry_run
from optcli.config.init_and_groups import ParamGroup
from optcli.config.loading import RawConfig
from optcli.config.metrics import better_direction
from optcli.config.metrics_section import resolve_metrics
from optcli.config.model_section import model_output_key, resolve_model, resolve_model_init
from optcli.config.parts import PARTS, OptimizerPart
from optcli.config.scheduler_section import resolve_scheduler
from optcli.config.schema import ConfigFile, TrainConfig, validate_file
from optcli.config.sections import (
    Problems,
    choose_monitor,
    display_name,
    is_subclass,
    resolve_loss,
    resolve_optimizer,
    resolve_param_groups,
)
from optcli.config.spec import Component, DataSpec, RunSpec, SchedulerSpec, optimizer_steps
from optcli.config.speed_options import check_scaling
from optcli.errors import ConfigError
from optcli.extras import missing, needs
from optcli.metrics.table import Metric


def resolve_config(raw: RawConfig) -> RunSpec:
    """Validate a config mapping completely; raise one ConfigError listing every problem. A long
    run's schedule is previewed at sampled periods (config/rates.py), so start-up does not grow with it."""
    problems = Problems()
    config, problems.lines = validate_file(raw.values)
    device = _check_top_level(config, problems)

    data = resolve_data(config.data, raw.base_dir, problems) if config.data else None
    loss = resolve_loss(config.loss, data, raw.base_dir, problems)
    data = _with_binary_labels(data, loss)
    model = resolve_model(config.model, data, raw.base_dir, problems) if config.model else None
    metrics = resolve_metrics(config.metrics, data, raw.base_dir, problems)
    optimizer, groups, parts = _resolve_optimizer(config, raw, problems)
    train = config.train if data is None else _settle_evaluation(config.train, data, metrics, problems)
    if train.on_nonfinite == "skip" and optimizer and optimizers.class_needs_closure(optimizer.target):
        problems.add(
            f"train.on_nonfinite: skip cannot work with {optimizer.name}, which evaluates the loss inside "
            "its own step (before it could be skipped); use stop"
        )
    check_scaling(train, device, optimizer, problems)
    epochs, total_steps = _run_length(train, data, problems) if data is not None else (0, 0)
    scheduler = None
    if config.scheduler is not None:
        # Without a run length (broken data, reported) a stand-in one still checks the scheduler's
        # own arguments, so that one message lists every problem; no scheduler comes of it.
        run_length = {"step": total_steps or 1, "epoch": epochs or 1}
        carried_scheduler = raw.carried.get("scheduler", {})
        scheduler = resolve_scheduler(
            config.scheduler,
            carried_scheduler,
            run_length,
            data,
            raw.base_dir,
            problems,
            metrics=metrics,
            train_monitor=train.monitor,
        )
        scheduler = scheduler if total_steps else None
    if parts:
        run_length = {"step": total_steps or 1, "epoch": epochs or 1}
        parts = _resolve_part_schedulers(config, parts, run_length, data, metrics, raw, problems)
    stepping = scheduler or next((part.scheduler for part in parts if part.scheduler), None)
    schedule_length = total_steps if stepping is not None and stepping.interval == "step" else epochs
    output_key = model_output_key(config.model, model) if config.model else None
    init = resolve_model_init(config.model, raw.base_dir, problems) if config.model else None
    findings = dry_run(
        model,
        output_key,
        init,
        loss,
        optimizer,
        groups,
        parts,
        scheduler,
        data,
        schedule_length,
        train.checkpoint,
        problems,
    )
    _check_judged_monitors(loss, output_key, stepping, train, problems)

    if problems.lines:
        raise ConfigError(problems.lines)
    assert data and model and loss and optimizer and device  # each one's absence is a problem above
    return RunSpec(
        name=config.name or raw.default_name,
        seed=config.seed,
        deterministic=config.deterministic,
        device=device,
        model=model,
        data=data,
        loss=loss,
        optimizer=optimizer,
        scheduler=scheduler,
        clip=config.clip,
        train=train,
        output=config.output,
        epochs=epochs,
        total_steps=total_steps,
        findings=findings,
        notes=tuple(problems.notes),
        param_groups=groups,
        parts=parts,
        model_output=output_key,
        model_init=init,
        metrics=metrics,
    )


def _check_judged_monitors(
    loss: Component | None,
    output_key: str | int | None,
    scheduler: SchedulerSpec | None,
    train: TrainConfig,
    problems: Problems,
) -> None:
    """A model that computes its own loss gives accuracy or errors only when model.output names its
    predictions; a monitor of those needs it."""
    if loss is None or not is_subclass(loss.target, (ModelLoss,)) or output_key is not None:
        return
    stopping = train.early_stopping
    for where, monitor in (
        ("train.monitor", train.monitor),
        ("scheduler.monitor", scheduler.monitor if scheduler else None),
        ("train.early_stopping.monitor", stopping.monitor if stopping else None),
    ):
        if monitor not in (None, "train_loss", "val_loss"):
            problems.add(
                f"{where}: '{monitor}' judges the model's predictions; with loss: from_model, set model.output "
                "to them (e.g. model.output: logits)"
            )


def _with_binary_labels(data: DataSpec | None, loss: Component | None) -> DataSpec | None:
    """Two classes judged by bce_with_logits: one logit per sample, the labels as floats."""
    if data is None or loss is None or data.info.classes != 2 or not is_subclass(loss.target, BINARY_LOSSES):
        return data
    return dataclasses.replace(data, binary_labels=True)


def _resolve_optimizer(
    config: ConfigFile, raw: RawConfig, problems: Problems
) -> tuple[Component | None, tuple[ParamGroup, ...], tuple[OptimizerPart, ...]]:
    """The optimizer and its parameter groups; or, with optimizer.parts, the parts (their own
    schedulers come later, once the run's length is known) and the class that combines them."""
    section = config.optimizer
    if section is None:
        return None, (), ()
    if section.parts is None:
        assert section.name is not None  # (the section's validation requires name or parts)
        optimizer = resolve_optimizer(section, {}, raw.base_dir, problems)
        groups = resolve_param_groups(section, optimizer, problems) if optimizer else ()
        left = raw.carried.get("optimizer")
        if optimizer is not None and left:
            listed = ", ".join(f"{key}={value}" for key, value in left.items())
            problems.notes.append(
                f"optimizer: switching to {display_name(optimizer.name, optimizer.target)} starts from its own "
                f"defaults; the replaced class's {listed} not carried over (set them again to keep them)"
            )
        return optimizer, groups, ()
    parts = []
    for name, part_section in section.parts.items():
        where = f"optimizer.parts.{name}"
        part = resolve_optimizer(part_section, {}, raw.base_dir, problems, where)
        if part is None:
            continue
        if optimizers.class_needs_closure(part.target):
            problems.add(
                f"{where}.name: {part.name} evaluates the loss inside its own step, so it cannot be a part"
            )
        groups = resolve_param_groups(part_section, part, problems, where)
        parts.append(OptimizerPart(name, part_section.selectors, part, groups))
    if len(parts) < len(section.parts):  # (a part's problems are listed: the split is not checked without it)
        return None, (), ()
    return PARTS, (), tuple(parts)


def _resolve_part_schedulers(
    config: ConfigFile,
    parts: tuple[OptimizerPart, ...],
    run_length: dict[str, int],
    data: DataSpec | None,
    metrics: tuple[Metric, ...],
    raw: RawConfig,
    problems: Problems,
) -> tuple[OptimizerPart, ...]:
    """The parts with their own schedulers resolved: all stepped at one interval (and, for
    ReduceLROnPlateau, with one metric), and none beside a scheduler of the whole optimizer."""
    sections = config.optimizer.parts or {} if config.optimizer else {}
    scheduled = {
        name: section.scheduler for name, section in sections.items() if section.scheduler is not None
    }
    if not scheduled:
        return parts
    if config.scheduler is not None:
        problems.add(
            f"optimizer.parts.{next(iter(scheduled))}.scheduler: the top-level scheduler already drives every "
            "part; give each part its own scheduler, or none of them"
        )
        return parts
    resolved = {
        name: resolve_scheduler(
            section,
            {},
            run_length,
            data,
            raw.base_dir,
            problems,
            f"optimizer.parts.{name}.scheduler",
            metrics,
        )
        for name, section in scheduled.items()
    }
    found = [spec for spec in resolved.values() if spec is not None]
    if len({(spec.interval, spec.monitor) for spec in found}) > 1:
        listed = ", ".join(
            f"{name}: per {spec.interval}" + (f" on {spec.monitor}" if spec.monitor else "")
            for name, spec in resolved.items()
            if spec
        )
        problems.add(
            f"optimizer.parts: the parts' schedulers are stepped together, so they need one interval and monitor ({listed})"
        )
    return tuple(dataclasses.replace(part, scheduler=resolved.get(part.name)) for part in parts)


def _check_top_level(config: ConfigFile, problems: Problems) -> str | None:
    """The device (None when it is not here), the run's name, and what output.tensorboard and
    output.mlflow need."""
    device = None
    try:
        device = resolve_device(config.device)
    except ConfigError as error:
        problems.add_error("device", error)
    if config.output.tensorboard and missing("tensorboard"):
        problems.add(f"output.tensorboard: {needs('tensorboard')}")
    if config.output.mlflow is not None and missing("mlflow"):
        problems.add(f"output.mlflow: {needs('mlflow')}")
    if config.name is not None and (
        "/" in config.name or config.name in (".", "..") or any(ord(c) < 32 for c in config.name)
    ):
        problems.add(f"name: {config.name!r} must be usable as a folder name (no '/', no control characters)")
    return device


def _run_length(train: TrainConfig, data: DataSpec, problems: Problems) -> tuple[int, int]:
    """The epochs and optimizer steps the run will take (max_steps may end it mid-epoch)."""
    if data.batches_per_epoch == 0:
        problems.add(
            f"data.batch_size: {data.loader.batch_size} is larger than the {data.train_samples} training samples"
            + (f" (of {data.info.samples}, after the validation split)" if data.val_samples_held_out else "")
            + " and drop_last is true, so an epoch has no batches"
        )
        return 0, 0
    steps_per_epoch = optimizer_steps(data.batches_per_epoch, train.accumulate)
    total_steps = train.epochs * steps_per_epoch
    if train.max_steps is not None:
        total_steps = min(total_steps, train.max_steps)
    return math.ceil(total_steps / steps_per_epoch), total_steps


def _settle_evaluation(
    train: TrainConfig, data: DataSpec, metrics: tuple[Metric, ...], problems: Problems
) -> TrainConfig:
    """Early stopping's monitor and mode filled in; evaluation settings that cannot work refused."""
    if train.eval_every is not None and not data.has_validation:
        problems.add(
            "train.eval_every: there is no validation data to evaluate on; set data.val_fraction or data.val"
        )
    if train.test_on == "best" and not data.has_validation:
        problems.add(
            "train.test_on: best is chosen by the validation data, and there is none; use last, or set data.val_fraction"
        )
    if train.test_on == "best" and not train.checkpoint:
        problems.add(
            "train.test_on: best reads the best weights back from checkpoints/best.pt, and train.checkpoint "
            "is false; use last"
        )
    if train.test_on is None:
        best = data.has_validation and train.checkpoint
        train = train.model_copy(update={"test_on": "best" if best else "last"})
    # (An unknown monitor is a problem already; "train_loss" only keeps the types whole until it is raised.)
    chosen = choose_monitor(train.monitor, data, metrics, "train.monitor", problems) or "train_loss"
    train = train.model_copy(update={"monitor": chosen})
    stopping = train.early_stopping
    if stopping is None:
        return train
    where = "train.early_stopping.monitor"
    monitor = choose_monitor(stopping.monitor, data, metrics, where, problems, chosen) or "train_loss"
    filled = stopping.model_copy(
        update={"monitor": monitor, "mode": stopping.mode or better_direction(monitor, metrics)}
    )
    return train.model_copy(update={"early_stopping": filled})
