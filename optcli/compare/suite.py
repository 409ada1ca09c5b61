"""A benchmark suite: one compare file naming several workloads, each a task with a target on a
validation metric; every arm runs on every workload over the seeds, and the arms are scored across
workloads by their performance profiles (profiles.py), as MLCommons AlgoPerf scores training
algorithms.

Each workload is an ordinary comparison of its own (plan.py, run.py) in `<suite>/<workload>/`, ranked
by steps (or seconds) to its target, with the fairness, tuning, `--jobs`, Ray and `--resume` that
compare has; the suite's own files (suite_report.py) are read from theirs.

With a pool of workers, every run that can start at once (each workload's tuning trials, or all its
runs where it is not tuned) goes into one queue, longest first, so that no core idles at a
workload's end; then each workload's comparison goes on as a resume does: it reuses those runs,
runs its selected trials' seeds, and reports. The runs are the same, so the verdict is too.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from optcli.compare.planning.plan import CommandLine
from optcli.compare.planning.suite_plan import SuitePlan
from optcli.compare.reporting.report import ComparisonResult
from optcli.compare.run import ComparisonInterrupted, run_comparison
from optcli.compare.running.jobs import Event, Job, JobOutcome, JobsInterrupted, plan_jobs, run_jobs
from optcli.compare.running.resume import INVOCATION, save_invocation
from optcli.compare.running.tracking import ParentRun, parent_metrics, settings_of, tracked_jobs

if TYPE_CHECKING:
    from optcli.compare.reporting.suite_report import SuiteSummary


@dataclass(frozen=True)
class SuiteResult:
    directory: Path
    results: dict[str, ComparisonResult]  # by workload
    summary: SuiteSummary  # the scores, times and verdict across them


class SuiteInterrupted(KeyboardInterrupt):
    """Ctrl-C in a workload: what finished is on disk; `--resume` goes on from there."""

    def __init__(self, directory: Path) -> None:
        super().__init__()
        self.directory = directory


def suite_jobs(suite: SuitePlan) -> tuple[list[Job], dict[str, int]]:
    """Every workload's jobs as one display shows them: numbered after the previous workloads' and
    named `<workload>/<arm>`; and where each workload's numbers start."""
    offsets: dict[str, int] = {}
    everything: list[Job] = []
    for name, plan in suite.workloads:
        offsets[name] = len(everything)
        everything += [
            replace(job, index=offsets[name] + job.index, arm=f"{name}/{job.arm}")
            for job in plan_jobs(plan, Path())
        ]
    return everything, offsets


def run_suite(
    suite: SuitePlan,
    pool: Any,
    on_event: Callable[[str, int, Event], None],
    invocation: tuple[list[Path], CommandLine],
    resume_dir: Path | None = None,
    allow_changes: bool = False,
) -> SuiteResult:
    """Every workload's comparison in `<out>/compare-<name>/<timestamp>/<workload>/`, then the suite's
    report. `on_event(workload, job_index, event)` sees each run's progress, the job numbered as
    its workload's plan_jobs numbers it."""
    from optcli.compare.reporting.suite_report import write_suite_report
    from optcli.train.rundir import create_run_dir, writer_lock

    directory = resume_dir or create_run_dir(suite.output_dir, f"compare-{suite.name}")
    with writer_lock(directory, "suite"):
        if resume_dir is None:
            save_invocation(directory, *invocation)
        settings = settings_of(suite.workloads[0][1].arms[0].spec)
        parent = ParentRun(directory, settings, suite.name) if settings is not None else None
        ran: dict[Path, JobOutcome] = {}
        if resume_dir is None and pool is not None:
            ran = _run_what_can_start(suite, directory, pool, on_event, invocation, parent)
        results = {}
        for name, plan in suite.workloads:
            place = directory / name
            begun = resume_dir is not None and (place / INVOCATION).is_file()  # (resuming: had it started?)
            try:
                results[name] = run_comparison(
                    plan,
                    pool,
                    lambda index, event, name=name: on_event(name, index, event),  # type: ignore[misc]
                    invocation,
                    resume_dir=place if begun else None,
                    allow_changes=allow_changes,
                    directory=place,
                    parent=parent,
                    workload=name,
                    ran=ran,
                )
            except ComparisonInterrupted:
                if parent is not None:
                    parent.close(None, {}, "KILLED")
                raise SuiteInterrupted(directory) from None
        summary = write_suite_report(directory, suite, results)
        if parent is not None:
            parent.close(summary.verdict, parent_metrics({}, summary.scores), "FINISHED")
    return SuiteResult(directory, results, summary)


def _run_what_can_start(
    suite: SuitePlan,
    directory: Path,
    pool: Any,
    on_event: Callable[[str, int, Event], None],
    invocation: tuple[list[Path], CommandLine],
    parent: ParentRun | None,
) -> dict[Path, JobOutcome]:
    """Every workload's runs that need no other's result (a tuned workload's trials; all the runs of
    one that is not tuned) in one queue across the workloads, each workload's folder and record
    made first, as its comparison makes them (what a resume would go on from). Their outcomes, by
    folder."""
    queue: list[Job] = []
    owners: list[tuple[str, int]] = []  # the queue's job -> its workload and its number there
    for name, plan in suite.workloads:
        place = directory / name
        place.mkdir(parents=True, exist_ok=True)
        jobs = plan_jobs(plan, place)
        save_invocation(place, *invocation, jobs)
        ready = [job for job in jobs if job.trial is not None] if plan.tuning is not None else jobs
        for job in tracked_jobs(ready, parent, name):
            owners.append((name, job.index))
            queue.append(replace(job, index=len(queue)))

    def passed_on(index: int, event: Event) -> None:
        name, own = owners[index]
        on_event(name, own, replace(event, index=own) if isinstance(event, JobOutcome) else event)

    try:
        outcomes = run_jobs(queue, pool, passed_on)
    except JobsInterrupted:
        if parent is not None:
            parent.close(None, {}, "KILLED")
        raise SuiteInterrupted(directory) from None
    return {queue[outcome.index].run_dir: outcome for outcome in outcomes}
