"""Running a comparison: one training run per arm and seed, in this process or in workers.

Each run is an ordinary `optcli train` run in `<comparison>/<arm>-seed<seed>/`. Fairness comes from
the seed alone: for one seed every arm's model is built right after `torch.manual_seed(seed)` and its
data and order come from generators seeded from it, so all arms start from the same weights and see
the same batches (the hashes in results.csv let anyone check).
"""

from __future__ import annotations

import functools
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from optcli.compare.judging.ranking import JobStatus
from optcli.errors import ConfigError, TrainingFailed
from optcli.plotting import import_aside
from optcli.train.records import EpochRecord, Record, RunStarted, StepRecord
from optcli.train.sinks.mlflow_logging import Tracking
from optcli.workers.job_runner import WorkerMessage
from optcli.workers.pool import WorkerPool

if TYPE_CHECKING:
    from optcli.compare.planning.plan import (
        ComparisonPlan,  # (the workers that import this module need no plan)
    )
    from optcli.config.spec import RunSpec
    from optcli.train.sinks import RunOutcome

# Seconds between progress reports from a run: enough for a live bar, cheap across processes.
_REPORT_INTERVAL_S = 0.2


@dataclass(frozen=True)
class Job:
    index: int
    arm: str
    seed: int
    spec: RunSpec  # resolved once per arm, in the parent: a worker only builds and trains
    run_dir: Path
    trial: int | None = None  # a tuned comparison's phase 1: the arm's trial
    resume: bool = False  # compare --resume: go on from the run's checkpoint if it has one
    tracking: Tracking | None = None  # output.mlflow: the comparison's parent run and this run's tags

    @property
    def label(self) -> str:
        return (
            f"{self.arm} trial {self.trial} seed {self.seed}"
            if self.trial
            else f"{self.arm} seed {self.seed}"
        )


@dataclass(frozen=True)
class JobOutcome:
    index: int
    status: JobStatus
    error: str | None = None


class ProgressReporter:
    """A sink that passes on a run's start, its epochs, and a step now and then (for progress bars)."""

    def __init__(self, report: Callable[[Record], None]) -> None:
        self.report = report
        self._next_step_report = 0.0

    def handle(self, record: Record) -> None:
        if isinstance(record, StepRecord):
            now = time.perf_counter()
            if now < self._next_step_report:
                return
            self._next_step_report = now + _REPORT_INTERVAL_S
            self.report(record)
        elif isinstance(record, RunStarted | EpochRecord):
            self.report(record)

    def close(self, outcome: RunOutcome) -> None:
        pass


class JobsInterrupted(KeyboardInterrupt):
    """Ctrl-C stopped the jobs; `outcomes` are those of the jobs that ended, in job order."""

    def __init__(self, outcomes: list[JobOutcome]) -> None:
        super().__init__()
        self.outcomes = outcomes


Event = Record | JobOutcome  # what a comparison's display sees of each job


def run_job(job: Job, report: Callable[[Record], None]) -> JobOutcome:
    """Train one arm and seed; a diverging or failing run is an outcome, not an exception."""
    from optcli.train.run import train_run

    try:
        if job.resume and (job.run_dir / "checkpoints" / "last.pt").is_file():
            from optcli.train.resume import prepare_resume

            try:
                spec, point = prepare_resume(job.run_dir, [], allow_changes=False)
            except ConfigError:  # its files cannot be trusted (damaged, cut short): it starts afresh below
                point = None
            if point is not None:
                train_run(spec, [ProgressReporter(report)], job.run_dir, point, tracking=job.tracking)
                return JobOutcome(job.index, "ok")
        if job.resume and job.run_dir.exists():  # stopped before its first checkpoint: start it afresh
            shutil.rmtree(job.run_dir)
        job.run_dir.mkdir(parents=True, exist_ok=False)  # (and trials/ for a tuned comparison's first)
        train_run(job.spec, [ProgressReporter(report)], run_dir=job.run_dir, tracking=job.tracking)
    except TrainingFailed as error:
        return JobOutcome(job.index, "diverged" if error.diverged else "failed", str(error))
    except KeyboardInterrupt:
        return JobOutcome(job.index, "interrupted", "interrupted by the user")
    except Exception as error:
        return JobOutcome(job.index, "failed", f"{type(error).__name__}: {error}")
    return JobOutcome(job.index, "ok")


TRIALS = "trials"  # the folder of a tuned comparison's trial runs


def run_folder(arm: str, seed: int, trial: int | None = None) -> str:
    """A run's folder in its comparison: `adam-seed2`, a trial's `adam-trial3-seed0` (under TRIALS)."""
    return f"{arm}-trial{trial}-seed{seed}" if trial is not None else f"{arm}-seed{seed}"


def placed_run(folder: str) -> tuple[str, int, int | None]:
    """The arm, seed and trial a run's folder names (run_folder's inverse)."""
    rest, _, seed = folder.rpartition("-seed")
    arm, marker, trial = rest.rpartition("-trial")
    if marker and trial.isdigit():
        return arm, int(seed), int(trial)
    return rest, int(seed) if seed.isdigit() else 0, None


def plan_jobs(plan: ComparisonPlan, comparison_dir: Path) -> list[Job]:
    """Seed-major order, so that with several workers every arm's first seed finishes early. A tuned
    comparison's trials come first (phase 1); its later jobs take each arm's selected trial's config
    once phase 1 is done (until then they hold the arm's own)."""
    jobs: list[Job] = []
    tuning = plan.tuning
    for seed in tuning.seeds if tuning else ():
        for trial in tuning.trials if tuning else ():
            run_dir = comparison_dir / TRIALS / run_folder(trial.arm, seed, trial.index)
            jobs.append(Job(len(jobs), trial.arm, seed, replace(trial.spec, seed=seed), run_dir, trial.index))
    for seed in plan.seeds:
        for arm in plan.arms:
            run_dir = comparison_dir / run_folder(arm.name, seed)
            jobs.append(Job(len(jobs), arm.name, seed, plan.spec_for(arm, seed), run_dir))
    return jobs


def run_jobs(
    jobs: list[Job], pool: WorkerPool | None, on_event: Callable[[int, Event], None]
) -> list[JobOutcome]:
    """Run every job, in `pool` or else here, one by one; `on_event(job_index, event)` sees their
    progress and outcome.

    On Ctrl-C the runs under way stop cleanly and JobsInterrupted is raised with the outcomes so far.
    """
    outcomes: dict[int, JobOutcome] = {}
    runs_at_a_time = pool.size if pool is not None else 1

    def on_message(message: WorkerMessage) -> None:
        event = message.payload
        if message.kind == "lost":
            died = f"the worker process running it died, {message.payload}; optcli compare --resume runs it again"
            event = JobOutcome(message.job, "failed", died)
        if message.kind in ("done", "lost"):
            outcomes[message.job] = event
            if len(jobs) - len(outcomes) < runs_at_a_time:
                import_aside()  # for the figures at the end, on the core this worker leaves idle
        on_event(message.job, event)

    try:
        if pool is None:
            for job in jobs:
                outcome = run_job(job, functools.partial(on_event, job.index))
                outcomes[job.index] = outcome
                on_event(job.index, outcome)
                if outcome.status == "interrupted":
                    raise KeyboardInterrupt
        else:
            pool.run(jobs, on_message)
    except KeyboardInterrupt:
        raise JobsInterrupted([outcomes[index] for index in sorted(outcomes)]) from None
    return [outcomes[job.index] for job in jobs]
