"""A benchmark suite: one compare file naming several workloads, each a task with a target on a
validation metric; every arm runs on every workload over the seeds, and the arms are scored across
workloads by their performance profiles (profiles.py), as MLCommons AlgoPerf scores training
algorithms.

Each workload is an ordinary comparison of its own (plan.py, run.py) in `<suite>/<workload>/`, ranked
by steps (or seconds) to its target, with the fairness, tuning, `--jobs`, Ray and `--resume` that
compare has; the suite's own files (suite_report.py) are read from theirs.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from optcli.compare.planning.plan import CommandLine, ComparisonPlan
from optcli.compare.planning.suite_plan import SuitePlan
from optcli.compare.reporting.report import ComparisonResult
from optcli.compare.run import ComparisonInterrupted, run_comparison
from optcli.compare.running.jobs import Event
from optcli.compare.running.resume import INVOCATION, save_invocation
from optcli.compare.running.tracking import ParentRun, parent_metrics, settings_of

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


def run_suite(
    suite: SuitePlan,
    pool: Any,
    show: Callable[[str, ComparisonPlan], AbstractContextManager[Callable[[int, Event], None]]],
    invocation: tuple[list[Path], CommandLine],
    resume_dir: Path | None = None,
    allow_changes: bool = False,
) -> SuiteResult:
    """Every workload's comparison in `<out>/compare-<name>/<timestamp>/<workload>/`, one after the
    other (each spreading its runs over the pool), then the suite's report. `show(workload, plan)` is
    the display of a workload's runs: a context giving their progress callback."""
    from optcli.compare.reporting.suite_report import write_suite_report
    from optcli.train.rundir import create_run_dir, writer_lock

    directory = resume_dir or create_run_dir(suite.output_dir, f"compare-{suite.name}")
    with writer_lock(directory, "suite"):
        if resume_dir is None:
            save_invocation(directory, *invocation)
        settings = settings_of(suite.workloads[0][1].arms[0].spec)
        parent = ParentRun(directory, settings, suite.name) if settings is not None else None
        results = {}
        for name, plan in suite.workloads:
            place = directory / name
            begun = (place / INVOCATION).is_file()  # resuming: this workload had started
            try:
                with show(name, plan) as on_event:
                    results[name] = run_comparison(
                        plan,
                        pool,
                        on_event,
                        invocation,
                        resume_dir=place if begun else None,
                        allow_changes=allow_changes,
                        directory=place,
                        parent=parent,
                        workload=name,
                    )
            except ComparisonInterrupted:
                if parent is not None:
                    parent.close(None, {}, "KILLED")
                raise SuiteInterrupted(directory) from None
        summary = write_suite_report(directory, suite, results)
        if parent is not None:
            parent.close(summary.verdict, parent_metrics({}, summary.scores), "FINISHED")
    return SuiteResult(directory, results, summary)
