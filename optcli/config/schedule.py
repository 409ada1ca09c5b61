"""`optcli schedule`: the learning rate of every optimizer step of a run as configured, from the real
scheduler stepped on a stand-in optimizer (the model's parameters on the meta device): no data, no
training.

The one command that walks every step of a run: the walk is a stream (`walk_rates`), and what is
shown of it (the summary, the text plot, the PNG's envelope, the CSV) is taken as it passes, so a
schedule of millions of steps runs in flat memory.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import torch

from optcli.config.parts import run_optimizer, run_scheduler
from optcli.config.sections import display_name
from optcli.config.spec import RunSpec
from optcli.errors import ConfigError
from optcli.plotting import load_pyplot

PLOT_COLUMNS = 64  # the text plot's width
PNG_BUCKETS = 4_000  # a longer schedule is drawn as each bucket's lowest and highest rate
LISTED_CHANGES = 8  # more changes than this are counted, not listed


@dataclass(frozen=True)
class PlannedStep:
    step: int
    epoch: int
    lr: float  # the rate this step uses: what metrics.csv's lr column will hold
    group_lrs: tuple[float, ...] = ()  # every parameter group's rate, param_groups[0]'s first


def follows_a_metric(spec: RunSpec) -> bool:
    """ReduceLROnPlateau: its path depends on the metric, so it is shown without reductions."""
    return spec.stepping is not None and spec.stepping.monitor is not None


def walk_rates(spec: RunSpec) -> Iterator[PlannedStep]:
    """The rate of every step of the run, one step at a time: the scheduler is stepped when the run's
    loop steps it (after every optimizer step, or after every epoch)."""
    with torch.device("meta"):
        model = spec.model.build()
        optimizer = run_optimizer(spec, model)
    scheduler = None
    if spec.stepping is not None and not follows_a_metric(spec):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch warns that no optimizer step came first: none is needed
            scheduler = run_scheduler(spec, optimizer)
    per_step = spec.stepping is not None and spec.stepping.interval == "step"
    for step in range(1, spec.total_steps + 1):
        epoch = (step - 1) // spec.steps_per_epoch + 1
        if scheduler is not None and step > 1 and (per_step or (step - 1) % spec.steps_per_epoch == 0):
            _step_scheduler(spec, scheduler, step)
        rates = tuple(float(group["lr"]) for group in optimizer.param_groups)
        yield PlannedStep(step, epoch, rates[0], rates)


def _step_scheduler(spec: RunSpec, scheduler: Any, step: int) -> None:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            scheduler.step()
    except Exception as error:
        assert spec.stepping is not None
        name = display_name(spec.stepping.component.name, spec.stepping.component.target)
        raise ConfigError(
            f"scheduler: {name} fails before step {step} of the run's {spec.total_steps}: {error}"
        ) from error


@dataclass
class ScheduleSummary:
    """What `optcli schedule` says of a walk, gathered as it passes: start, peak, final, where the
    rate changes, the points of the text plot and the PNG's envelope. Its size does not grow with the
    run's length."""

    total_steps: int
    first: PlannedStep | None = None
    peak: PlannedStep | None = None
    last: PlannedStep | None = None
    change_count: int = 0
    changes: list[PlannedStep] = field(default_factory=list)  # the first LISTED_CHANGES + 1
    final_change: PlannedStep | None = None
    plot_values: list[float] = field(default_factory=list)  # the text plot's columns
    envelope: list[tuple[int, float]] = field(default_factory=list)  # (step, lr): what the PNG draws
    _plot_steps: frozenset[int] = field(init=False)
    _bucket_size: int = field(init=False)
    _bucket: list[tuple[int, float]] = field(default_factory=list)

    def __post_init__(self) -> None:
        count = min(PLOT_COLUMNS, self.total_steps)  # evenly spaced, the first and the last step always
        spacing = (self.total_steps - 1) / max(1, count - 1)
        self._plot_steps = frozenset(round(column * spacing) + 1 for column in range(count))
        self._bucket_size = max(1, math.ceil(self.total_steps / PNG_BUCKETS))

    def add(self, now: PlannedStep) -> None:
        if self.first is None:
            self.first = now
        if self.peak is None or now.lr > self.peak.lr:
            self.peak = now
        if self.last is not None and now.lr != self.last.lr:
            self.change_count += 1
            self.final_change = now
            if len(self.changes) <= LISTED_CHANGES:
                self.changes.append(now)
        self.last = now
        if now.step in self._plot_steps:
            self.plot_values.append(now.lr)
        self._bucket.append((now.step, now.lr))
        if len(self._bucket) == self._bucket_size or now.step == self.total_steps:
            # the bucket's lowest and highest rate, in step order: the line drawn looks the same
            low = min(self._bucket, key=lambda point: point[1])
            high = max(self._bucket, key=lambda point: point[1])
            self.envelope.extend(sorted({low, high}))
            self._bucket.clear()


def summarize(spec: RunSpec, csv: BinaryIO | None = None) -> ScheduleSummary:
    """Walk the run's schedule once, writing every step to `csv` (when given) as it passes."""
    summary = ScheduleSummary(spec.total_steps)
    columns = spec.rate_columns
    if csv is not None:
        header = ",".join(("step", "epoch", "lr", *(column for column, _ in columns)))
        csv.write(f"{header}\n".encode())
    for planned in walk_rates(spec):
        summary.add(planned)
        if csv is not None:  # the rates as metrics.csv writes them (exactly: repr round-trips)
            others = "".join(f",{planned.group_lrs[index]!r}" for _, index in columns)
            csv.write(f"{planned.step},{planned.epoch},{planned.lr!r}{others}\n".encode())
    return summary


def describe_schedule(spec: RunSpec, summary: ScheduleSummary) -> list[str]:
    """The schedule in words: what it is, its start, peak and final rates, and where the rate changes."""
    scheduler = spec.scheduler
    what = (
        f"{scheduler.component.name} per {scheduler.interval}"
        if scheduler
        else "no scheduler (a constant rate)"
    )
    lines = [f"{spec.name}: {what}; {spec.total_steps} optimizer steps over {spec.epochs} epochs"]
    first, peak, last = summary.first, summary.peak, summary.last
    if first is None or peak is None or last is None:
        return lines
    lines.append(
        f"start {first.lr:.3e}, peak {peak.lr:.3e} (step {peak.step}), final {last.lr:.3e} (step {last.step})"
    )
    for label, (_, index) in zip(rate_labels(spec), spec.rate_columns, strict=True):
        lines.append(f"{label}: start {first.group_lrs[index]:.3e}, final {last.group_lrs[index]:.3e}")
    changes = summary.changes
    if not changes:
        lines.append("the rate never changes")
    elif summary.change_count <= LISTED_CHANGES:
        points = ", ".join(f"step {point.step} (epoch {point.epoch}): {point.lr:.3e}" for point in changes)
        lines.append(f"the rate changes at {points}")
    else:
        final = summary.final_change
        assert final is not None
        lines.append(
            f"the rate changes {summary.change_count} times, from step {changes[0].step} to step {final.step}"
        )
    if follows_a_metric(spec):
        lines.append(
            "ReduceLROnPlateau lowers the rate when the monitored metric stops improving: shown here without "
            "any reduction, which is the most it can be"
        )
    return lines


def text_plot(values: list[float], steps: int, height: int = 12) -> list[str]:
    """A plot in text of values sampled evenly over `steps` steps: a log scale when they span more
    than 20×."""
    if not values:
        return []
    finite = [value for value in values if math.isfinite(value)]
    low, high = (min(finite), max(finite)) if finite else (0.0, 1.0)
    log = low > 0 and high / low > 20
    scale = math.log10 if log else (lambda value: value)
    bottom, top = scale(low), scale(high)
    span = top - bottom or 1.0
    rows = [[" "] * len(values) for _ in range(height)]
    for column, value in enumerate(values):
        if math.isfinite(value) and (value > 0 or not log):
            row = round((scale(value) - bottom) / span * (height - 1))
            rows[height - 1 - row][column] = "•"
    labels = {0: f"{high:.1e}", height - 1: f"{low:.1e}"}
    return [f"{labels.get(index, ''):>8} │{''.join(row)}" for index, row in enumerate(rows)] + [
        f"{'':>8} └{'─' * len(values)} step 1 … {steps}" + (" (log scale)" if log else "")
    ]


def rate_labels(spec: RunSpec) -> list[str]:
    """What each of `spec.rate_columns` is, in words: 'group 1 (*.bias)'; with parts, 'muon (Muon on
    matrices)' and 'muon group 1 (*.bias)'."""
    if not spec.parts:
        return [
            f"group {number} ({', '.join(group.patterns)})"
            for number, group in enumerate(spec.param_groups, 1)
        ]
    labels = []
    for part in spec.parts:
        name = display_name(part.optimizer.name, part.optimizer.target)
        labels.append(f"{part.name} ({name} on {', '.join(part.selectors)})")
        labels += [
            f"{part.name} group {number} ({', '.join(group.patterns)})"
            for number, group in enumerate(part.param_groups, 1)
        ]
    return labels


def save_schedule_png(path: Path, summary: ScheduleSummary, title: str) -> None:
    """The rate against the step (every step, or each bucket's extremes on a long run)."""
    pyplot = load_pyplot()
    figure, axis = pyplot.subplots(figsize=(9, 4))
    axis.plot([step for step, _ in summary.envelope], [lr for _, lr in summary.envelope], linewidth=1.6)
    rates = [lr for _, lr in summary.envelope if lr > 0]
    if rates and max(rates) / min(rates) > 20:
        axis.set_yscale("log")
    axis.set_title(f"{title}: learning rate of every optimizer step", fontsize=10)
    axis.set_xlabel("optimizer step")
    axis.set_ylabel("learning rate")
    axis.grid(True, which="both", alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    pyplot.close(figure)
