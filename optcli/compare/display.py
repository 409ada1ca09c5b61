"""What the terminal shows during `optcli compare`: a bar per arm and seed, then the ranked table."""

from __future__ import annotations

import math
import sys
from typing import TYPE_CHECKING, TextIO

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from optcli.compare.judging.ranking import ArmSummary, MetricInfo, info_of
from optcli.compare.judging.verdict import Verdict, format_value
from optcli.compare.running.jobs import Event, Job, JobOutcome
from optcli.train.records import EpochRecord, RunStarted, StepRecord
from optcli.train.sinks.display import format_loss

if TYPE_CHECKING:
    from optcli.compare.planning.suite_plan import SuitePlan
    from optcli.compare.reporting.suite_report import SuiteSummary


class LiveComparison:
    """A bar for the whole comparison, with its ETA, and one per job with its running loss; finished
    jobs show their status."""

    def __init__(self, console: Console, jobs: list[Job]) -> None:
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[state]}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=console,
            refresh_per_second=4,
        )
        width = max(len(job.label) for job in jobs)
        # Every run's length is known from the plan, so the whole comparison's remaining time can be told.
        total = sum(job.spec.total_steps for job in jobs)
        self.overall = self.progress.add_task("all runs".ljust(width), total=total, state="steps")
        self.done: dict[int, int] = {}  # each job's steps so far
        self.labels = {job.index: job.label for job in jobs}
        self.tasks: dict[int, TaskID] = {
            job.index: self.progress.add_task(
                job.label.ljust(width), total=None, start=False, state="waiting"
            )
            for job in jobs
        }

    def __enter__(self) -> LiveComparison:
        self.progress.start()
        return self

    def __exit__(self, *exception: object) -> None:
        self.progress.stop()

    def __call__(self, index: int, event: Event) -> None:
        task = self.tasks[index]
        if isinstance(event, RunStarted):
            self.progress.start_task(task)
            self.progress.update(task, total=event.total_steps, state="")
        elif isinstance(event, StepRecord):
            self.progress.update(task, completed=event.step, state=f"loss {format_loss(event.loss)}")
            self._count(index, event.step)
        elif isinstance(event, EpochRecord):
            self.progress.update(task, completed=event.step, state=f"loss {format_loss(event.train_loss)}")
            self._count(index, event.step)
        elif isinstance(event, JobOutcome):
            state = self.progress.tasks[task].fields.get("state", "")
            done = "done" if event.status == "ok" else event.status
            self.progress.update(task, state=f"{done} {state}".strip())
            self.progress.stop_task(task)
            if why_failed(event):
                self.progress.console.print(failure(self.labels[index], event), markup=False, highlight=False)

    def _count(self, index: int, step: int) -> None:
        self.done[index] = step
        self.progress.update(self.overall, completed=sum(self.done.values()))


class PlainComparison:
    """A line per finished job, for logs and pipes."""

    def __init__(self, stream: TextIO, jobs: list[Job]) -> None:
        self.stream = stream
        self.jobs = {job.index: job for job in jobs}
        self.last_loss: dict[int, float] = {}

    def __enter__(self) -> PlainComparison:
        return self

    def __exit__(self, *exception: object) -> None:
        pass

    def __call__(self, index: int, event: Event) -> None:
        if isinstance(event, EpochRecord):
            self.last_loss[index] = event.train_loss
        elif isinstance(event, JobOutcome):
            job = self.jobs[index]
            loss = self.last_loss.get(index)
            detail = f", last epoch loss {format_loss(loss)}" if loss is not None else ""
            if reason := why_failed(event):
                detail += f": {reason}"
            print(f"{job.label}: {event.status}{detail}", file=self.stream, flush=True)


class QuietComparison(PlainComparison):
    """Only why a run failed, on stderr (the table and the verdict say that it did)."""

    def __call__(self, index: int, event: Event) -> None:
        if isinstance(event, JobOutcome) and why_failed(event):
            print(failure(self.jobs[index].label, event), file=sys.stderr, flush=True)


def why_failed(outcome: JobOutcome) -> str | None:
    """What made a failed run fail (None for a run that did not fail, or whose reason is unknown)."""
    return outcome.error if outcome.status == "failed" else None


def failure(label: str, outcome: JobOutcome) -> str:
    return f"{label} failed: {why_failed(outcome)}"


def output_console() -> Console:
    """The console for the ranked table: on a terminal its width; in logs and pipes (which have none)
    wide enough that no column is cut to fit 80 characters."""
    console = Console()
    return console if console.is_terminal else Console(width=max(console.width, 200))


def make_comparison_display(
    console: Console, jobs: list[Job], quiet: bool
) -> LiveComparison | PlainComparison:
    """A bar per run on a terminal, a line per finished run in logs and pipes, or nothing (--quiet)."""
    if quiet:
        return QuietComparison(sys.stdout, jobs)
    if console.is_terminal:
        return LiveComparison(console, jobs)
    return PlainComparison(sys.stdout, jobs)


def ranking_table(ranked: list[ArmSummary], metric: str | MetricInfo, verdict: Verdict) -> Table:
    info = info_of(metric)
    metric = info.name
    better = "lower" if info.lower_is_better else "higher"
    table = Table(title=f"{metric} ({better} is better), mean ± std over seeds", title_justify="left")
    for column in ("rank", "arm", "mean ± std", "min", "max", "seeds", "train time"):
        table.add_column(column, justify="left" if column == "arm" else "right", no_wrap=True)
    if not all(arm.controlled for arm in ranked):
        table.caption = "† other initial weights or data than the other arms: not a controlled comparison"
    for arm in ranked:
        mark = (" ★" if arm.arm == verdict.winner else "") + ("" if arm.controlled else " †")
        if arm.mean is not None and arm.std is not None:
            value = f"{format_value(arm.mean, info)} ± {format_value(arm.std, info, like=arm.mean)}"
            low = format_value(arm.low or 0.0, info, like=arm.mean)
            high = format_value(arm.high or 0.0, info, like=arm.mean)
        else:
            missing = (
                "not run"
                if arm.runs == 0
                else "not reached"
                if info.needs_target and not arm.trouble
                else "-"
            )
            value, low, high = missing, "-", "-"
        seeds = f"{len(arm.values)}/{arm.runs}"
        counts = {
            "diverged": arm.runs_diverged,
            "failed": arm.runs_failed,
            "interrupted": arm.runs_interrupted,
        }
        troubles = ", ".join(f"{count} {what}" for what, count in counts.items() if count)
        if troubles:
            seeds += f" ({troubles})"
        train_time = f"{arm.mean_train_time_s:.1f}s" if arm.mean_train_time_s is not None else "-"
        table.add_row(str(arm.rank), arm.arm + mark, value, low, high, seeds, train_time)
    return table


def suite_table(suite: SuitePlan, summary: SuiteSummary) -> Table:
    """A suite's arms by score: each workload's median time to its target (★ the fastest)."""
    from optcli.compare.reporting.suite_report import measure_words, measured

    table = Table(
        title=f"median {measure_words(suite)} to target over {len(suite.seeds)} seeds (★ fastest)",
        caption=f"score: the area under the arm's performance profile from 1 to {suite.tau_max:g}, over {suite.tau_max - 1:g}",
        title_justify="left",
        caption_justify="left",
    )
    table.add_column("arm", no_wrap=True)
    table.add_column("score", justify="right")
    for name, _ in suite.workloads:
        table.add_column(name, justify="right", no_wrap=True)
    for arm, score in summary.scores.items():
        cells = []
        for name, _ in suite.workloads:
            value = measured(summary.times[name][arm], suite)
            shown = (
                "not reached"
                if math.isinf(value)
                else f"{value:.0f}"
                if suite.time == "steps"
                else f"{value:.2f} s"
            )
            cells.append(shown + (" ★" if arm in summary.fastest[name] else ""))
        table.add_row(arm, f"{score:.3f}", *cells)
    return table
