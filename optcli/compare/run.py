"""`optcli compare` as a library call: run the plan, then rank, judge and report."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from optcli.compare.jobs import Event, JobOutcome, JobsInterrupted, plan_jobs, run_jobs
from optcli.compare.plan import ComparisonPlan
from optcli.compare.ranking import ArmSummary, RunResult, rank_arms
from optcli.compare.report import (
    read_run_result,
    write_results_csv,
    write_summary_csv,
    write_summary_json,
)
from optcli.compare.verdict import Verdict, give_verdict
from optcli.compare.workers import WorkerPool
from optcli.config.metrics import VALIDATION_METRICS
from optcli.train.rundir import create_run_dir


@dataclass(frozen=True)
class ComparisonResult:
    directory: Path
    results: list[RunResult]
    ranked: list[ArmSummary]
    verdict: Verdict
    status: Literal["completed", "interrupted"]


class ComparisonInterrupted(KeyboardInterrupt):
    """Ctrl-C: the finished runs are on disk and reported; `result` says what they showed."""

    def __init__(self, result: ComparisonResult) -> None:
        super().__init__()
        self.result = result


def run_comparison(
    plan: ComparisonPlan, pool: WorkerPool | None, on_event: Callable[[int, Event], None]
) -> ComparisonResult:
    """Train every arm with every seed under `<out>/compare-<name>/<timestamp>/` and report on them.

    The runs go to `pool` (see `start_workers`), or run here one by one when it is None.
    """
    directory = create_run_dir(plan.output_dir, f"compare-{plan.name}")
    jobs = plan_jobs(plan, directory)
    status: Literal["completed", "interrupted"]
    try:
        outcomes = run_jobs(jobs, pool, on_event)
        status = "completed"
    except JobsInterrupted as interrupt:
        outcomes = interrupt.outcomes
        status = "interrupted"
    finished: dict[int, JobOutcome] = {outcome.index: outcome for outcome in outcomes}
    results = [
        read_run_result(job, finished[job.index], plan.target_loss) for job in jobs if job.index in finished
    ]
    ranked = rank_arms(results, plan.ranking_metric, [arm.name for arm in plan.arms])
    verdict = give_verdict(ranked, plan.ranking_metric, plan.target_loss)
    write_results_csv(directory / "results.csv", results, plan.validation_metrics)
    write_summary_csv(directory / "summary.csv", ranked, plan.ranking_metric)
    write_summary_json(directory / "summary.json", plan, ranked, verdict, results, status)
    _draw(directory, plan, jobs, finished)
    result = ComparisonResult(directory, results, ranked, verdict, status)
    if status == "interrupted":
        raise ComparisonInterrupted(result)
    return result


def _draw(directory: Path, plan: ComparisonPlan, jobs: list, finished: dict[int, JobOutcome]) -> None:
    from optcli.compare.curves import draw_curves, read_curve

    metric = plan.ranking_metric if plan.ranking_metric in VALIDATION_METRICS else None
    curves = {arm.name: [] for arm in plan.arms}  # type: ignore[var-annotated]
    for job in jobs:
        if job.index in finished:
            curves[job.arm].append(read_curve(job.run_dir, metric))
    diverged = {job.arm for job in jobs if job.index in finished and finished[job.index].status == "diverged"}
    draw_curves(directory / "curves.png", curves, plan.name, diverged, metric)
