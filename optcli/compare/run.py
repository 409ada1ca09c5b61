"""`optcli compare` as a library call: run the plan, then rank, judge and report."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Literal

from optcli.compare.judging.ranking import RunResult, rank_arms
from optcli.compare.judging.verdict import give_verdict, with_protocol
from optcli.compare.planning.plan import CommandLine, ComparisonPlan
from optcli.compare.planning.tuning import Tuning, edge_warnings, select, write_tuning_files
from optcli.compare.reporting.report import (
    ComparisonResult,
    read_run_result,
    write_results_csv,
    write_summary_csv,
    write_summary_json,
)
from optcli.compare.reporting.sensitivity import draw_sensitivity
from optcli.compare.running.jobs import Event, Job, JobOutcome, JobsInterrupted, plan_jobs, run_jobs
from optcli.compare.running.resume import check_unchanged, finished, save_invocation
from optcli.compare.running.tracking import ParentRun, parent_metrics, settings_of, tracked_jobs
from optcli.train.rundir import create_run_dir, writer_lock
from optcli.workers.pool import WorkerPool


class ComparisonInterrupted(KeyboardInterrupt):
    """Ctrl-C: the finished runs are on disk and reported; `result` says what they showed."""

    def __init__(self, result: ComparisonResult) -> None:
        super().__init__()
        self.result = result


def run_comparison(
    plan: ComparisonPlan,
    pool: WorkerPool | None,
    on_event: Callable[[int, Event], None],
    invocation: tuple[list[Path], CommandLine] | None = None,
    resume_dir: Path | None = None,
    allow_changes: bool = False,
    directory: Path | None = None,
    parent: ParentRun | None = None,
    workload: str | None = None,
    ran: dict[Path, JobOutcome] | None = None,
) -> ComparisonResult:
    """Train every arm with every seed under `<out>/compare-<name>/<timestamp>/` (or `directory`, a
    suite's workload) and report on them.

    The runs go to `pool` (see `start_workers`), or run here one by one when it is None. `invocation`
    (the files and options) is kept for `--resume`, with what each run computes; `resume_dir`
    continues the comparison there (a changed arm refused, or with `allow_changes` run again).
    With output.mlflow, the runs are children of `parent` (a suite's, tagged `workload`), or of a
    parent run of the comparison's own (tracking.py). `ran`: the outcomes of this plan's runs that
    this process has just run (a suite's one queue), by folder: taken as they are, not read back.
    """
    if resume_dir is None and directory is not None:
        directory.mkdir(parents=True, exist_ok=True)
    directory = resume_dir or directory or create_run_dir(plan.output_dir, f"compare-{plan.name}")
    with writer_lock(directory, "comparison"):  # one writer: a second compare --resume is refused
        if resume_dir is None and invocation is not None:
            save_invocation(directory, *invocation, plan_jobs(plan, directory))
        elif resume_dir is not None:
            paths = invocation[0] if invocation is not None else []
            check_unchanged(directory, paths, plan_jobs(plan, directory), allow_changes)
        settings = settings_of(plan.arms[0].spec)
        own = ParentRun(directory, settings, plan.name) if parent is None and settings is not None else None
        try:
            result = _compare_locked(
                plan, pool, on_event, directory, resume_dir is not None, own or parent, workload, ran or {}
            )
        except ComparisonInterrupted as interrupted:
            if own is not None:
                own.close(interrupted.result.verdict.text, _means(interrupted.result), "KILLED")
            raise
        if own is not None:
            own.close(result.verdict.text, _means(result), "FINISHED")
        return result


def _means(result: ComparisonResult) -> dict[str, float]:
    return parent_metrics({arm.arm: arm.mean for arm in result.ranked})


def _compare_locked(
    plan: ComparisonPlan,
    pool: WorkerPool | None,
    on_event: Callable[[int, Event], None],
    directory: Path,
    resuming: bool,
    parent: ParentRun | None,
    workload: str | None,
    ran: dict[Path, JobOutcome],
) -> ComparisonResult:
    run = functools.partial(_run_or_reuse, pool=pool, on_event=on_event, resuming=resuming, ran=ran)
    jobs = tracked_jobs(plan_jobs(plan, directory), parent, workload)
    status: Literal["completed", "interrupted"] = "completed"
    protocol: list[str] = []
    if plan.tuning is not None:  # phase 1: every arm's trials, and each arm's pick
        trials = [job for job in jobs if job.trial is not None]
        jobs, protocol, interrupted = _tune(plan, plan.tuning, directory, trials, jobs[len(trials) :], run)
        if interrupted:
            status, jobs = "interrupted", []
    try:
        outcomes = run(jobs) if jobs else []
    except JobsInterrupted as interrupt:
        outcomes = interrupt.outcomes
        status = "interrupted"
    finished: dict[int, JobOutcome] = {outcome.index: outcome for outcome in outcomes}
    results = [
        read_run_result(job, finished[job.index], plan.target) for job in jobs if job.index in finished
    ]
    ranked = rank_arms(results, plan.metric_info, [arm.name for arm in plan.arms])
    verdict = with_protocol(give_verdict(ranked, plan.metric_info, plan.target), protocol)
    write_results_csv(directory / "results.csv", results, plan.validation_metrics)
    write_summary_csv(directory / "summary.csv", ranked, plan.metric)
    write_summary_json(directory / "summary.json", plan, ranked, verdict, results, status)
    _draw(directory, plan, jobs, finished)
    result = ComparisonResult(directory, results, ranked, verdict, status)
    if status == "interrupted":
        raise ComparisonInterrupted(result)
    return result


def _run_or_reuse(
    jobs: list[Job],
    pool: WorkerPool | None,
    on_event: Callable[[int, Event], None],
    resuming: bool,
    ran: dict[Path, JobOutcome],
) -> list[JobOutcome]:
    """Run the jobs; those in `ran` keep the outcome they had here; when resuming, those that ended
    on their own keep theirs (read back and checked), and the others resume from their checkpoints
    (or start afresh)."""
    if not resuming and not ran:
        return run_jobs(jobs, pool, on_event)
    kept = {}
    for job in jobs:
        if job.run_dir in ran:  # (its outcome already shown as it ran)
            kept[job.index] = replace(ran[job.run_dir], index=job.index)
        elif resuming and (outcome := finished(job)) is not None:
            kept[job.index] = outcome
            on_event(job.index, outcome)
    remaining = [replace(job, resume=resuming) for job in jobs if job.index not in kept]
    try:
        now = run_jobs(remaining, pool, on_event) if remaining else []
    except JobsInterrupted as interrupt:
        raise JobsInterrupted(sorted([*kept.values(), *interrupt.outcomes], key=lambda o: o.index)) from None
    return sorted([*kept.values(), *now], key=lambda outcome: outcome.index)


def _tune(
    plan: ComparisonPlan,
    tuning: Tuning,
    directory: Path,
    trials: list[Job],
    later: list[Job],
    run: Callable[[list[Job]], list[JobOutcome]],
) -> tuple[list[Job], list[str], bool]:
    """Phase 1: the trials, each arm's selection (trials.csv, selected.csv, <arm>.yaml,
    sensitivity.png); the later jobs on the selected settings, the protocol in words and its warnings,
    and whether Ctrl-C stopped it."""
    interrupted = False
    try:
        outcomes = run(trials)
    except JobsInterrupted as interrupt:
        outcomes, interrupted = interrupt.outcomes, True
    finished = {outcome.index: outcome for outcome in outcomes}
    per_trial: dict[tuple[str, int], list[RunResult]] = {}
    rows = []
    for job in trials:
        if job.index not in finished:
            continue
        result = read_run_result(job, finished[job.index], plan.target)
        assert job.trial is not None
        per_trial.setdefault((job.arm, job.trial), []).append(result)
        setting = next(t.setting for t in tuning.trials if t.arm == job.arm and t.index == job.trial)
        rows.append(
            {
                "arm": job.arm,
                "trial": job.trial,
                "seed": job.seed,
                "setting": setting,
                "status": result.status,
                "metric": result.metric(plan.metric),
                "train_time_s": result.train_time_s,
            }
        )
    chosen = select(tuning, per_trial, plan.metric, plan.metric_info.lower_is_better)
    write_tuning_files(directory, tuning, rows, chosen)
    draw_sensitivity(directory / "sensitivity.png", tuning, rows, chosen, plan.metric)
    picked = {arm: selection.trial.spec for arm, selection in chosen.items() if selection.trial.spec}
    selected = [
        replace(job, spec=replace(picked[job.arm], seed=job.seed)) for job in later if job.arm in picked
    ]
    protocol = [tuning.protocol(plan.metric, plan.seeds), *edge_warnings(tuning, chosen)]
    return selected, protocol, interrupted


def _draw(directory: Path, plan: ComparisonPlan, jobs: list, finished: dict[int, JobOutcome]) -> None:
    from optcli.compare.reporting.curves import draw_curves, read_curve

    metric = plan.metric if plan.metric in plan.validation_metrics else None
    curves = {arm.name: [] for arm in plan.arms}  # type: ignore[var-annotated]
    for job in jobs:
        if job.index in finished:
            curves[job.arm].append(read_curve(job.run_dir, metric))
    diverged = {job.arm for job in jobs if job.index in finished and finished[job.index].status == "diverged"}
    draw_curves(directory / "curves.png", curves, plan.name, diverged, metric)
