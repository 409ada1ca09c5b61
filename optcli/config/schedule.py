"""`optcli schedule`: the learning rate of every optimizer step of a run as configured, read off the
dry run (the real scheduler, stepped on a stand-in optimizer): no model, no data, no training.

Pure functions: the per-step rates, where they change, and a plot drawn in text for the terminal.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

from optcli.config.spec import RunSpec
from optcli.plotting import load_pyplot


@dataclass(frozen=True)
class PlannedStep:
    step: int
    epoch: int
    lr: float  # the rate this step uses: what metrics.csv's lr column will hold
    group_lrs: tuple[float, ...] = ()  # with parameter groups: every group's rate, the default group's first


def planned_rates(spec: RunSpec) -> list[PlannedStep]:
    """The rate of every step of the run. ReduceLROnPlateau follows a metric, so its path is shown
    without reductions (see `follows_a_metric`)."""
    preview = spec.findings.schedule
    assert preview is None or not preview.periods, "a sampled preview: resolve with exact_schedule=True"
    per_step = spec.scheduler is not None and spec.scheduler.interval == "step"
    start = spec.findings.start_lr if spec.findings.start_lr is not None else math.nan
    starts = spec.findings.start_lrs if len(spec.findings.start_lrs) > 1 else ()
    steps_per_epoch = spec.steps_per_epoch
    planned = []
    for step in range(1, spec.total_steps + 1):
        epoch = (step - 1) // steps_per_epoch + 1
        if preview is None:
            lr, groups = start, starts
        else:
            period = min(step if per_step else epoch, len(preview.rates)) - 1
            lr, groups = preview.rates[period], preview.group_rates[period] if preview.group_rates else ()
        planned.append(PlannedStep(step, epoch, lr, groups))
    return planned


def follows_a_metric(spec: RunSpec) -> bool:
    return spec.scheduler is not None and spec.findings.schedule is None


def change_points(planned: list[PlannedStep]) -> list[PlannedStep]:
    """The steps whose rate differs from the step before."""
    return [now for before, now in itertools.pairwise(planned) if now.lr != before.lr]


def describe_schedule(spec: RunSpec, planned: list[PlannedStep]) -> list[str]:
    """The schedule in words: what it is, its start, peak and final rates, and where the rate changes."""
    scheduler = spec.scheduler
    what = (
        f"{scheduler.component.name} per {scheduler.interval}"
        if scheduler
        else "no scheduler (a constant rate)"
    )
    lines = [f"{spec.name}: {what}; {spec.total_steps} optimizer steps over {spec.epochs} epochs"]
    if not planned:
        return lines
    peak = max(planned, key=lambda planned_step: planned_step.lr)
    lines.append(
        f"start {planned[0].lr:.3e}, peak {peak.lr:.3e} (step {peak.step}), final {planned[-1].lr:.3e} "
        f"(step {planned[-1].step})"
    )
    for index, label in enumerate(group_labels(spec)[1:], start=1):
        lines.append(
            f"group {index} ({label}): start {planned[0].group_lrs[index]:.3e}, final "
            f"{planned[-1].group_lrs[index]:.3e}"
        )
    changes = change_points(planned)
    if not changes:
        lines.append("the rate never changes")
    elif len(changes) <= 8:
        points = ", ".join(f"step {point.step} (epoch {point.epoch}): {point.lr:.3e}" for point in changes)
        lines.append(f"the rate changes at {points}")
    else:
        lines.append(
            f"the rate changes {len(changes)} times, from step {changes[0].step} to step {changes[-1].step}"
        )
    if follows_a_metric(spec):
        lines.append(
            "ReduceLROnPlateau lowers the rate when the monitored metric stops improving: shown here without "
            "any reduction, which is the most it can be"
        )
    return lines


def text_plot(values: list[float], width: int = 64, height: int = 12) -> list[str]:
    """A plot of values against their index, in text: a log scale when they span more than 20×."""
    if not values:
        return []
    finite = [value for value in values if math.isfinite(value)]
    low, high = (min(finite), max(finite)) if finite else (0.0, 1.0)
    log = low > 0 and high / low > 20
    scale = math.log10 if log else (lambda value: value)
    bottom, top = scale(low), scale(high)
    span = top - bottom or 1.0
    count = min(width, len(values))  # the first and the last value are always shown
    columns = [values[round(column * (len(values) - 1) / max(1, count - 1))] for column in range(count)]
    rows = [[" "] * len(columns) for _ in range(height)]
    for column, value in enumerate(columns):
        if math.isfinite(value) and (value > 0 or not log):
            row = round((scale(value) - bottom) / span * (height - 1))
            rows[height - 1 - row][column] = "•"
    labels = {0: f"{high:.1e}", height - 1: f"{low:.1e}"}
    return [f"{labels.get(index, ''):>8} │{''.join(row)}" for index, row in enumerate(rows)] + [
        f"{'':>8} └{'─' * len(columns)} step 1 … {len(values)}" + (" (log scale)" if log else "")
    ]


def group_labels(spec: RunSpec) -> list[str]:
    """Each parameter group's patterns (the default group first), when the run has groups."""
    if not spec.param_groups:
        return []
    return ["the rest", *(", ".join(group.patterns) for group in spec.param_groups)]


def schedule_csv(planned: list[PlannedStep]) -> str:
    """`step,epoch,lr` (and `lr_group1`, ... with parameter groups), the rates written as metrics.csv
    writes them (exactly: repr round-trips)."""
    groups = len(planned[0].group_lrs) if planned else 0
    header = "step,epoch,lr" + "".join(f",lr_group{index}" for index in range(1, groups))
    rows = (
        f"{row.step},{row.epoch},{row.lr!r}" + "".join(f",{lr!r}" for lr in row.group_lrs[1:]) + "\n"
        for row in planned
    )
    return header + "\n" + "".join(rows)


def save_schedule_png(path: str, planned: list[PlannedStep], title: str) -> None:
    """The rate against the step, with epoch boundaries marked."""
    pyplot = load_pyplot()
    figure, axis = pyplot.subplots(figsize=(9, 4))
    axis.plot([row.step for row in planned], [row.lr for row in planned], linewidth=1.6)
    rates = [row.lr for row in planned if row.lr > 0]
    if rates and max(rates) / min(rates) > 20:
        axis.set_yscale("log")
    axis.set_title(f"{title}: learning rate of every optimizer step", fontsize=10)
    axis.set_xlabel("optimizer step")
    axis.set_ylabel("learning rate")
    axis.grid(True, which="both", alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    pyplot.close(figure)
