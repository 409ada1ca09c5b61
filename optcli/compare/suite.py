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
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, ValidationError

from optcli.compare.jobs import Event
from optcli.compare.plan import (
    CommandLine,
    ComparisonPlan,
    check_plan,
    plan_from_compare_file,
    read_compare_file,
)
from optcli.compare.resume import INVOCATION, save_invocation
from optcli.compare.run import ComparisonInterrupted, ComparisonResult, run_comparison
from optcli.compare.tracking import ParentRun, parent_metrics, settings_of
from optcli.config.loading import merge_arm
from optcli.config.schema import Strict, describe_error
from optcli.config.yaml_loader import load_yaml_mapping
from optcli.errors import ConfigError

if TYPE_CHECKING:
    from optcli.compare.suite_report import SuiteSummary

TimeMeasure = Literal["steps", "seconds"]
RANKED_BY = {"steps": "steps_to_target", "seconds": "time_to_target"}


class Workload(Strict):
    config: str | dict[str, Any]  # a config file (relative to the compare file), or one inline
    target: dict[str, Any]  # one validation metric (or loss) and the value to reach
    budget: int | None = Field(None, ge=1)  # this workload's tuning trials per arm
    changes: dict[str, Any] | None = None  # to the config, as an arm's are (data: {val_fraction: 0.2})


@dataclass(frozen=True)
class SuitePlan:
    name: str
    workloads: tuple[tuple[str, ComparisonPlan], ...]
    arms: tuple[str, ...]
    seeds: tuple[int, ...]
    tau_max: float
    time: TimeMeasure
    output_dir: Path


def is_suite(values: dict[str, Any]) -> bool:
    return "workloads" in values


def load_suite(path: Path, values: dict[str, Any], command_line: CommandLine) -> SuitePlan:
    """Every workload planned and every arm of every workload resolved before anything runs; one
    ConfigError naming the workload, the arm and the key of each problem."""
    compare = read_compare_file(path, values)
    assert compare.workloads is not None
    given = command_line
    if given.metric is not None or given.target_loss is not None:
        raise ConfigError(
            "--metric and --target-loss do not apply to a suite: each workload is ranked by the time to its "
            "own target (--time steps or seconds)"
        )
    time = given.time or "steps"
    if time not in RANKED_BY:
        raise ConfigError(f"--time: steps or seconds, not '{time}'")
    shared = {key: value for key, value in values.items() if key not in ("workloads", "tau_max", "name")}
    problems: list[str] = []
    planned = []
    for name, entry in compare.workloads.items():
        try:
            workload = Workload.model_validate(entry)
        except ValidationError as error:
            problems += [
                f"{path}: {describe_error(d, Workload, f'workloads.{name}')}" for d in error.errors()
            ]
            continue
        try:
            own = {
                **shared,
                "name": name,
                "base": _with_changes(path, workload),
                "target": workload.target,
                "metric": RANKED_BY[time],
                **({"budget": workload.budget} if workload.budget is not None else {}),
            }
            planned.append((name, check_plan(plan_from_compare_file(path, own, given))))
        except ConfigError as error:
            problems += [f"workload '{name}': {problem}" for problem in error.problems]
    if problems:
        raise ConfigError(problems)
    first = planned[0][1]
    return SuitePlan(
        name=compare.name or path.stem,
        workloads=tuple(planned),
        arms=tuple(arm.name for arm in first.arms),
        seeds=first.seeds,
        tau_max=compare.tau_max,
        time=time,  # type: ignore[arg-type]
        output_dir=first.output_dir,
    )


def _with_changes(path: Path, workload: Workload) -> str | dict[str, Any]:
    """The workload's config, its changes merged in as an arm's are (then inline: relative paths in it
    are taken from the compare file's folder, where the suite's configs live)."""
    if workload.changes is None:
        return workload.config
    values = (
        load_yaml_mapping((path.parent / workload.config).resolve())
        if isinstance(workload.config, str)
        else workload.config
    )
    return merge_arm(values, workload.changes)


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
    from optcli.compare.suite_report import write_suite_report
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
