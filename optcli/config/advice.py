"""What `optcli check` warns about: configs that are valid but would surely not do what was meant.

Pure functions of a resolved RunSpec. Errors (a metric that will not exist) are found when the
config resolves; these are warnings: printed, exit 0, unless `--strict` makes them errors.
"""

from __future__ import annotations

import torch
from torch.optim import lr_scheduler

from optcli import seeds
from optcli.config.spec import RunSpec
from optcli.config.splits import split_rows
from optcli.seeds import derive_seed

# A schedule that brings the learning rate below this fraction of its start has stopped learning.
# A rate below this fraction of the schedule's peak barely moves the weights; a schedule that keeps
# the rate there for more than a quarter of the run wastes that part (cosine decay to zero spends about
# the last 1% of the run there, StepLR(10, 0.1) over 40 epochs never goes below 1e-3).
NEGLIGIBLE = 1e-4
WASTED_SHARE = 0.25


def advise(specs: dict[str, RunSpec]) -> tuple[list[str], list[str]]:
    """The notes and the warnings for one run (its key "") or for each arm of a comparison (each line
    naming its arm)."""

    def named(arm: str, lines: list[str]) -> list[str]:
        return [f"arm '{arm}': {line}" if arm else line for line in lines]

    notes = [line for arm, spec in specs.items() for line in named(arm, find_notes(spec))]
    warnings = [line for arm, spec in specs.items() for line in named(arm, find_warnings(spec))]
    return notes, warnings


def find_notes(spec: RunSpec) -> list[str]:
    """What a user should know before training, though nothing is wrong: the guesses optcli made."""
    reason = spec.data.info.task_reason
    groups = (
        [
            "optimizer.parts:" if spec.parts else "optimizer.param_groups:",
            *(f"  {line}" for line in spec.findings.group_table),
        ]
        if spec.findings.group_table
        else []
    )
    return ([f"data: {reason}"] if reason else []) + list(spec.notes) + groups


def find_warnings(spec: RunSpec) -> list[str]:
    found = _model_warnings(spec) + _optimizer_warnings(spec) + _data_warnings(spec) + _loss_warnings(spec)
    if spec.scheduler is not None:
        found += _scheduler_warnings(spec)
    return found


def _loss_warnings(spec: RunSpec) -> list[str]:
    """reduction: sum grows the loss and its gradient with the batch: val_loss then depends on the
    batch size, and accumulated micro-batches are weighted as means."""
    if spec.loss.arguments.get("reduction") != "sum":
        return []
    return [
        "loss.reduction: sum makes the loss and its gradient grow with the batch size (val_loss depends on "
        "batch_size, and train.accumulate weighs micro-batches as means); leave reduction out (mean) unless "
        "that is meant"
    ]


def _model_warnings(spec: RunSpec) -> list[str]:
    """More outputs than classes (a pretrained 1000-way head on 10 classes): it trains, but the extra
    outputs soak up probability and the head's size is surely not what was meant."""
    width, classes = spec.findings.output_width, spec.data.info.classes
    if width is None or not classes or spec.data.binary_labels or width <= classes:
        return []
    return [
        f"model: it gives {width} outputs per sample, but the data has {classes} classes; set the model's "
        f"number of outputs to {classes} (model.out_features, or num_classes for timm and torchvision models)"
    ]


def _data_warnings(spec: RunSpec) -> list[str]:
    train, test = spec.data.train.component, spec.data.test.component if spec.data.test else None
    draws_anew = getattr(train.target, "DRAWS_EACH_SPLIT", False)
    if test is not None and not draws_anew and test.record() == train.record():
        return [
            "data.test: it is the training data itself (the same dataset and arguments), so the test "
            "loss measures memory, not generalization; give it data the model never trains on"
        ]
    return _classes_never_trained(spec)


# Data up to this many samples is loaded by `check` to see which classes its held-out rows have.
SPLIT_CHECK_SAMPLES = 2_000_000


def _classes_never_trained(spec: RunSpec) -> list[str]:
    """Classes that val_fraction or test_fraction hold out whole (a tiny table, a rare class): no
    training row has them, so the model can never predict them and every one counts as wrong."""
    data, loader = spec.data, spec.data.loader
    if (
        not data.is_classification
        or data.from_user_dataset
        or data.info.sequence_length is not None
        or (loader.val_fraction is None and loader.test_fraction is None)
        or data.info.samples > SPLIT_CHECK_SAMPLES
    ):
        return []
    targets = data.train.source.load(derive_seed(spec.seed, seeds.DATA), "train").targets.reshape(-1)
    rows, held_out = split_rows(len(targets), data, spec.seed)
    trained = set(targets[rows].tolist())
    names = data.info.class_names
    found = []
    for split, part in held_out.items():
        labels = targets[part].tolist()
        missing = sorted(set(labels) - trained)
        if not missing:
            continue
        shown = ", ".join(repr(names[int(label)]) if names else str(int(label)) for label in missing)
        count = sum(label in missing for label in labels)
        words = "validation" if split == "val" else split
        found.append(
            f"data.{split}_fraction: the {words} rows hold class {shown}, which no training row has ({count} of "
            f"{len(labels)} {words} rows): the model cannot learn it, so each such row counts as wrong; give "
            f"more data, or {words} data of its own (data.{split})"
        )
    return found


def _optimizer_warnings(spec: RunSpec) -> list[str]:
    found = [
        f"optimizer.{key}: {spec.optimizer.name} accepts any keyword argument but never reads '{key}' "
        "(a misspelling?); it is ignored"
        for key in spec.findings.unread_arguments
    ]
    target, arguments = spec.optimizer.target, spec.optimizer.arguments
    if (
        target is torch.optim.Adam
        and arguments.get("weight_decay", 0)
        and not arguments.get("decoupled_weight_decay")
    ):
        found.append(
            "optimizer.weight_decay: Adam adds weight decay to the gradient (L2), where Adam's adaptive "
            "scaling weakens it; AdamW decouples it, which is what weight decay usually means: name: adamw"
        )
    if target is torch.optim.LBFGS and spec.data.loader.batch_size < spec.data.train_samples:
        found.append(
            f"data.batch_size: LBFGS's line search compares the loss of one function at several points, but "
            f"with batches of {spec.data.loader.batch_size} of {spec.data.train_samples} samples every step "
            f"sees another one; use batch_size: {spec.data.train_samples} (the whole data) or another optimizer"
        )
    return found


def _scheduler_warnings(spec: RunSpec) -> list[str]:
    assert spec.scheduler is not None
    found = []
    scheduler = spec.scheduler
    target, arguments = scheduler.component.target, scheduler.component.arguments
    per_step = scheduler.interval == "step"
    length = spec.total_steps if per_step else spec.epochs
    unit = "optimizer steps" if per_step else "epochs"
    if target is lr_scheduler.OneCycleLR:
        planned = arguments.get("total_steps") or arguments.get("epochs", 0) * arguments.get(
            "steps_per_epoch", 0
        )
        if planned and planned != length:
            what = "stop short of its end" if planned > length else "fail when it runs out"
            found.append(
                f"scheduler.total_steps: OneCycleLR plans {planned} {unit} but the run takes {length}: the cycle "
                f"would {what}; leave total_steps out and optcli sets it"
            )
        if not per_step:
            found.append(
                "scheduler.interval: OneCycleLR is meant to be stepped after every batch; with interval: "
                "epoch its whole cycle spans the epochs instead (leave interval out for the default, step)"
            )
    if target is lr_scheduler.CyclicLR and not per_step:
        found.append("scheduler.interval: CyclicLR's cycle is counted in batches; leave interval out (step)")
    if target is lr_scheduler.SequentialLR:
        late = [milestone for milestone in arguments.get("milestones", []) if milestone >= length]
        if late:
            found.append(
                f"scheduler.milestones: {late} at or past the run's end ({length} {unit}): the schedulers "
                "after them never run"
            )
    if target in (lr_scheduler.StepLR, lr_scheduler.MultiStepLR):
        first = arguments.get("step_size") or min(arguments.get("milestones") or [length + 1])
        if first > length:
            found.append(
                f"scheduler: {target.__name__} first changes the rate after {first} {unit}, but the run takes "
                f"{length}: the rate never changes"
            )
    wasted = _negligible_share(spec)
    if wasted is not None and wasted > WASTED_SHARE:
        found.append(
            f"scheduler: the learning rate stays below {NEGLIGIBLE:g} of its peak for {wasted:.0%} of the run, "
            f"which would barely learn; check the decay and `interval: {scheduler.interval}` (the schedule "
            "is stepped per " + ("optimizer step)" if scheduler.interval == "step" else "epoch)")
        )
    return found


def _negligible_share(spec: RunSpec) -> float | None:
    """The share of the run's scheduler periods whose rate is negligible next to the schedule's peak
    (the configured rate, or the highest the schedule reaches: warmup and OneCycleLR climb first)."""
    schedule = spec.findings.schedule
    if schedule is None or not schedule.rates:
        return None
    peak = max(schedule.start_lr, *schedule.rates)
    if peak <= 0:
        return None
    return sum(rate < NEGLIGIBLE * peak for rate in schedule.rates) / len(schedule.rates)
