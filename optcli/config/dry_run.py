"""The one dry run before training: the model built on the meta device, one batch's shapes through
it and the loss, the optimizer built on its parameters (and tried on small real stand-ins of them:
config/state_probe.py), and the scheduler stepped through the run.

Meta tensors have shapes and dtypes but no data, so this costs no memory and little time, yet it
catches what signatures cannot: a loss that cannot compare the model's output with the targets, an
optimizer that cannot take the model's parameters, a scheduler that rejects its arguments. Found
here, such a mistake is a config error naming the section, instead of a crash at the first step.
`check`, the shape checks and the schedule warnings all read this one run.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import warnings
from typing import Any

import torch
from torch.optim import lr_scheduler
from torch.utils.flop_counter import FlopCounterMode

from optcli.components.optimizers import shapes_refused
from optcli.components.parted import PartedOptimizer
from optcli.components.signature import read_signature
from optcli.config.forward_check import check_forward, first_batch
from optcli.config.init_and_groups import ModelInit, ParamGroup
from optcli.config.memory_check import check_memory
from optcli.config.parts import assign_parts, build_on, part_parameters
from optcli.config.rates import SAMPLED_PERIODS, can_jump, rates_at, sampled_periods
from optcli.config.sections import Problems, display_name, is_subclass
from optcli.config.spec import (
    Component,
    DataSpec,
    DryRunFindings,
    OptimizerPart,
    SchedulePreview,
    SchedulerSpec,
)
from optcli.config.state_probe import probe_optimizer
from optcli.errors import ConfigError


def dry_run(
    model: Component | None,
    output_key: str | int | None,
    init: ModelInit | None,
    loss: Component | None,
    optimizer: Component | None,
    groups: tuple[ParamGroup, ...],
    parts: tuple[OptimizerPart, ...],
    scheduler: SchedulerSpec | None,
    data: DataSpec | None,
    schedule_length: int,
    checkpoints: bool,
    problems: Problems,
) -> DryRunFindings:
    """Build each object once on the meta device and note every problem; return what else it saw."""
    example = first_batch(data, problems)  # a user's Dataset: read before meta tensors are the default
    width = flops = None  # the outputs per sample the loss sees; the forward pass's floating-point operations
    with torch.device("meta"):
        network = _build_model(model, problems) if model is not None else None
        check_memory(network, data, problems)
        if network is not None and init is not None:
            _check_init(network, init, problems)
        if network is not None and loss is not None and data is not None:
            with FlopCounterMode(display=False) as counter:  # (counted from shapes: no arithmetic is done)
                width = check_forward(network, model, output_key, loss, data, example, problems)
            flops = counter.get_total_flops() or None
            _check_last_batch(network, data, problems)
        if optimizer is None:
            return DryRunFindings()
    findings = _dry_run_optimizer(
        network, optimizer, groups, parts, scheduler, schedule_length, checkpoints, width, problems
    )
    return dataclasses.replace(findings, forward_flops=flops)


def _dry_run_optimizer(
    network: torch.nn.Module | None,
    optimizer: Component,
    groups: tuple[ParamGroup, ...],
    parts: tuple[OptimizerPart, ...],
    scheduler: SchedulerSpec | None,
    schedule_length: int,
    checkpoints: bool,
    width: int | None,
    problems: Problems,
) -> DryRunFindings:
    """The optimizer (or its parts) built on the model's parameters and tried, and the schedule previewed."""
    if parts:
        return _dry_run_parts(network, parts, scheduler, schedule_length, checkpoints, width, problems)
    with torch.device("meta"):
        # Without a model, one stand-in parameter still runs torch's own checks of the arguments.
        named = (
            list(network.named_parameters())
            if network is not None
            else [("", torch.nn.Parameter(torch.zeros(2, 2)))]
        )
        if network is not None and not _groups_match(named, groups, problems):
            return DryRunFindings()
        if network is not None and _matrices_only(optimizer, named, "optimizer", problems, split=True):
            return DryRunFindings()
        try:
            built = build_on(optimizer, named, groups if network is not None else ())
        except Exception as error:
            what = "cannot train this model" if network is not None else "rejected its arguments"
            problems.add(f"optimizer: {display_name(optimizer.name, optimizer.target)} {what}: {error}")
            return DryRunFindings()
    groups_built = getattr(built, "param_groups", None)
    if not isinstance(groups_built, list) or not groups_built or "lr" not in groups_built[0]:
        problems.add(
            f"optimizer: {display_name(optimizer.name, optimizer.target)} keeps no learning rate ('lr') in its "
            "param_groups, which optcli logs and schedules; it cannot be used"
        )
        return DryRunFindings()
    if network is not None:
        shapes = [(name, parameter.shape) for name, parameter in named]
        refused = probe_optimizer(optimizer, shapes, groups, checkpoints)
        if refused:
            problems.add(
                f"optimizer: {display_name(optimizer.name, optimizer.target)} cannot be used: {refused}"
            )
            return DryRunFindings()
    start_lr = float(built.param_groups[0]["lr"])
    table = _group_table(built, groups) if groups and network is not None else ()  # before any schedule
    schedule = _preview_schedule(built, scheduler, schedule_length, problems) if scheduler else None
    unread = _unread_arguments(optimizer, built)
    return DryRunFindings(schedule, unread, start_lr, table, group_rates(built), width)


def _dry_run_parts(
    network: torch.nn.Module | None,
    parts: tuple[OptimizerPart, ...],
    scheduler: SchedulerSpec | None,
    schedule_length: int,
    checkpoints: bool,
    width: int | None,
    problems: Problems,
) -> DryRunFindings:
    """optimizer.parts: every parameter in exactly one part; each part built on its own parameters
    and tried as one optimizer is; then the parts combined, as the loop will see them."""
    if network is None:  # (broken, reported): each part's arguments are still checked, on a stand-in
        with torch.device("meta"):
            for part in parts:
                stand_in = [("", torch.nn.Parameter(torch.zeros(2, 2)))]
                _build_part(part, stand_in, problems)
        return DryRunFindings()
    assignment, found = assign_parts(network, parts)
    problems.lines += found
    if found:
        return DryRunFindings(output_width=width)
    named = list(network.named_parameters())
    built = {}
    for part in parts:
        where = f"optimizer.parts.{part.name}"
        own = part_parameters(named, assignment, part)
        if not own:
            problems.add(f"{where}.params: takes no parameter (the other parts take them all)")
            continue
        if not _groups_match(own, part.param_groups, problems, where) or _matrices_only(
            part.optimizer, own, where, problems
        ):
            continue
        with torch.device("meta"):
            optimizer = _build_part(part, own, problems)
        if optimizer is None:
            continue
        refused = probe_optimizer(
            part.optimizer, [(n, p.shape) for n, p in own], part.param_groups, checkpoints
        )
        if refused:
            name = display_name(part.optimizer.name, part.optimizer.target)
            problems.add(f"{where}: {name} cannot be used: {refused}")
            continue
        built[part.name] = optimizer
    if problems.lines:
        return DryRunFindings(output_width=width)
    combined = PartedOptimizer(built)
    table = _parts_table(combined, parts, assignment)  # before any schedule
    start_lrs = group_rates(combined)
    if scheduler is not None:
        schedule = _preview_schedule(combined, scheduler, schedule_length, problems)
    else:  # the parts' own schedulers: each previewed on its part; the first part's rate is `lr`
        previews = [
            _preview_schedule(
                built[part.name], part.scheduler, schedule_length, problems, f"{where_of(part)}.scheduler"
            )
            for part in parts
            if part.scheduler is not None
        ]
        first = parts[0].scheduler is not None
        schedule = previews[0] if previews and first else None
    return DryRunFindings(schedule, (), start_lrs[0], table, start_lrs, width)


def where_of(part: OptimizerPart) -> str:
    return f"optimizer.parts.{part.name}"


def _build_part(part: OptimizerPart, own: list[tuple[str, Any]], problems: Problems) -> Any | None:
    name = display_name(part.optimizer.name, part.optimizer.target)
    try:
        optimizer = build_on(part.optimizer, own, part.param_groups)
    except Exception as error:
        problems.add(f"{where_of(part)}: {name} cannot train its parameters: {error}")
        return None
    groups = getattr(optimizer, "param_groups", None)
    if not isinstance(groups, list) or not groups or "lr" not in groups[0]:
        problems.add(
            f"{where_of(part)}: {name} keeps no learning rate ('lr') in its param_groups, which optcli logs "
            "and schedules; it cannot be used"
        )
        return None
    return optimizer


def _matrices_only(
    optimizer: Component, named: list[tuple[str, Any]], where: str, problems: Problems, split: bool = False
) -> bool:
    """Muon takes matrices only: any other parameter given to it is named, with the split that works."""
    shapes, refused = shapes_refused((optimizer.inner or optimizer).target, named)
    if not refused:
        return False
    name = display_name(optimizer.name, optimizer.target)
    listed = ", ".join(refused[:8]) + (f" and {len(refused) - 8} more" if len(refused) > 8 else "")
    fix = (
        "split the optimizer into parts, Muon for the matrices and AdamW for the rest: optimizer: {parts: "
        "{muon: {name: muon, params: matrices}, adamw: {name: adamw, params: rest}}}"
        if split
        else "give it params: matrices (or name globs of its 2-D weights), and these to another part"
    )
    problems.add(f"{where}: {name} takes only {shapes} parameters, and these are not: {listed}; {fix}")
    return True


def _parts_table(
    combined: PartedOptimizer, parts: tuple[OptimizerPart, ...], assignment: dict[str, str]
) -> tuple[str, ...]:
    """A line per part (and per group inside it): its class, what it takes, its parameter and tensor
    counts, lr and weight_decay."""
    rows = []
    for part, span in zip(parts, combined.group_spans().values(), strict=True):
        name = display_name(part.optimizer.name, part.optimizer.target)
        labels = [f"{part.name} ({name}, {', '.join(part.selectors)})"]
        labels += [
            f"  group {number} ({', '.join(g.patterns)})" for number, g in enumerate(part.param_groups, 1)
        ]
        for label, index in zip(labels, span, strict=True):
            rows.append((label, combined.param_groups[index]))
    width = max(len(label) for label, _ in rows)
    lines = []
    for label, group in rows:
        count = sum(parameter.numel() for parameter in group["params"])
        tensors = len(group["params"])
        decay = group.get("weight_decay", "-")
        lines.append(
            f"{label:<{width}}  {count:>10,} parameters in {tensors:>3} tensors  lr {group['lr']:g}  "
            f"weight_decay {decay}"
        )
    return tuple(lines)


def _groups_match(
    named: list[tuple[str, Any]], groups: tuple[ParamGroup, ...], problems: Problems, where: str = "optimizer"
) -> bool:
    """Every pattern matches some parameter of the model (a typo would silently group nothing)."""
    names = [name for name, _ in named]
    unmatched = [
        (index, pattern)
        for index, group in enumerate(groups)
        for pattern in group.patterns
        if not any(fnmatch.fnmatchcase(name, pattern) for name in names)
    ]
    for index, pattern in unmatched:
        shown = ", ".join(names[:12]) + (", ..." if len(names) > 12 else "")
        problems.add(
            f"{where}.param_groups.{index}.params: '{pattern}' matches no parameter of the model ({shown})"
        )
    return not unmatched


def _group_table(built: torch.optim.Optimizer, groups: tuple[ParamGroup, ...]) -> tuple[str, ...]:
    """A line per parameter group: its patterns, parameter count, lr and weight_decay."""
    labels = ["(the rest)", *(", ".join(group.patterns) for group in groups)]
    width = max(len(label) for label in labels)
    lines = []
    for label, group in zip(labels, built.param_groups, strict=True):
        count = sum(parameter.numel() for parameter in group["params"])
        decay = group.get("weight_decay", "-")
        lines.append(f"{label:<{width}}  {count:>10,} parameters  lr {group['lr']:g}  weight_decay {decay}")
    return tuple(lines)


def _unread_arguments(optimizer: Component, built: torch.optim.Optimizer) -> tuple[str, ...]:
    """Arguments that only **kwargs took, and that the optimizer did not keep in its defaults."""
    named = read_signature(optimizer.target).parameters
    return tuple(key for key in optimizer.arguments if key not in named and key not in built.defaults)


def _build_model(model: Component, problems: Problems) -> torch.nn.Module | None:
    try:
        network = model.build()
        if isinstance(network, torch.nn.Module):
            return network
        name = display_name(model.name, model.target)
        problems.add(f"model: {name} built a {type(network).__name__}, not a torch.nn.Module")
    except ConfigError as error:
        problems.add_error("model", error)
    except Exception as error:
        name = display_name(model.name, model.target)
        problems.add(f"model: {name} could not be built: {type(error).__name__}: {error}")
    return None


def _check_init(network: torch.nn.Module, init: ModelInit, problems: Problems) -> None:
    """The trained weights must fit the model: every key (unless init_strict is false), every shape."""
    try:
        state = init.state_dict()
    except Exception as error:
        problems.add(f"model.init: cannot read {init.path} as weights: {type(error).__name__}: {error}")
        return
    expected = {key: tuple(value.shape) for key, value in network.state_dict().items()}
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    shapes = [
        f"{key} {list(state[key].shape)} (the model's {list(expected[key])})"
        for key in expected
        if key in state and tuple(state[key].shape) != expected[key]
    ]
    if shapes:
        problems.add(f"model.init: the weights in {init.path} do not fit the model: {'; '.join(shapes)}")
    elif (missing or unexpected) and init.strict:
        problems.add(
            f"model.init: the weights in {init.path} have other keys than the model (not in the file: {missing}; "
            f"not in the model: {unexpected}); set model.init_strict: false to load those that fit"
        )
    else:
        detail = (
            f" (not in the file: {missing}; not in the model: {unexpected})" if missing or unexpected else ""
        )
        problems.notes.append(f"model: starting from the weights in {init.path}{detail}")


def _check_last_batch(network: torch.nn.Module, data: DataSpec, problems: Problems) -> None:
    """BatchNorm cannot normalize one sample in training: a last batch of one fails mid-epoch."""
    batch_norm = any(
        isinstance(module, torch.nn.modules.batchnorm._BatchNorm) for module in network.modules()
    )
    size = data.loader.batch_size
    if batch_norm and not data.loader.drop_last and data.train_samples % size == 1:
        problems.add(
            f"data.batch_size: the last batch of each epoch would hold a single sample ({data.train_samples} "
            f"training samples in batches of {size}), which the model's BatchNorm cannot normalize; set "
            "data.drop_last: true, or another batch size"
        )


def _preview_schedule(
    optimizer: torch.optim.Optimizer,
    scheduler: SchedulerSpec,
    length: int,
    problems: Problems,
    where: str = "scheduler",
) -> SchedulePreview | None:
    """The scheduler built on the dry run's optimizer and stepped once per period of the run; a run
    longer than SAMPLED_PERIODS previewed at that many periods (rates.py)."""
    start_lr = float(optimizer.param_groups[0]["lr"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch warns that no optimizer step came first: none is needed
        try:
            built: Any = scheduler.build(optimizer)
        except Exception as error:
            name = display_name(scheduler.component.name, scheduler.component.target)
            problems.add(f"{where}: {name} rejected its arguments: {error}")
            return None
        if is_subclass(scheduler.component.target, (lr_scheduler.ReduceLROnPlateau,)):
            return None  # it follows the metric: nothing to preview
        if length > SAMPLED_PERIODS and can_jump(built):
            return _sampled_preview(built, optimizer, length)
        rates = [group_rates(optimizer)]  # every parameter group's, the default group's first
        try:
            for _ in range(max(0, length - 1)):
                built.step()
                rates.append(group_rates(optimizer))
        except Exception:
            return None  # a schedule that fails before the run's end (OneCycleLR too short): warned about
    groups = tuple(rates) if len(optimizer.param_groups) > 1 else ()
    return SchedulePreview(start_lr, tuple(rate[0] for rate in rates), groups)


def _sampled_preview(built: Any, optimizer: torch.optim.Optimizer, length: int) -> SchedulePreview | None:
    """The rates at evenly spaced periods, each reached by a jump (rates.py), not a walk."""
    start_lr = float(optimizer.param_groups[0]["lr"])
    periods = sampled_periods(length)
    try:
        rates = [rates_at(built, period) for period in periods]
    except Exception:
        return None  # a schedule that fails before the run's end: warned about
    groups = tuple(rates) if len(optimizer.param_groups) > 1 else ()
    return SchedulePreview(start_lr, tuple(rate[0] for rate in rates), groups, tuple(periods))


def group_rates(optimizer: torch.optim.Optimizer) -> tuple[float, ...]:
    return tuple(float(group["lr"]) for group in optimizer.param_groups)
