"""A suite's plan: its workloads read from the compare file, each planned and checked as a comparison
of its own (plan.py), before anything runs. Running it is suite.py's."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError

from optcli.compare.planning.plan import (
    CommandLine,
    ComparisonPlan,
    check_plan,
    plan_from_compare_file,
    read_compare_file,
)
from optcli.config.loading import merge_arm
from optcli.config.schema import Strict, describe_errors
from optcli.config.yaml_loader import load_yaml_mapping
from optcli.errors import ConfigError

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
            problems += [f"{path}: {line}" for line in describe_errors(error, Workload, f"workloads.{name}")]
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
