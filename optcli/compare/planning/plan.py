"""A comparison's plan: its arms (variants of one config), its seeds, and the metric that ranks them.

It comes from a compare file (`base:`, `seeds:`, `metric:`, `runs:`) or from several config files,
each an arm. Every arm and every seed is validated before anything runs; an error names the arm.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from optcli.compare.judging.ranking import METRIC_INFO, TARGET_METRICS, MetricInfo, metric_info
from optcli.compare.judging.targets import Target, read_target
from optcli.compare.planning.tuning import DraftTuning, Tuning, read_tuning, resolve_trials
from optcli.config.loading import RawConfig, apply_overrides, carried_over, merge_arm
from optcli.config.schema import Strict, describe_errors
from optcli.config.yaml_loader import load_yaml_mapping

if TYPE_CHECKING:
    from optcli.config.spec import RunSpec
    from optcli.metrics.table import Metric
from optcli.errors import ConfigError
from optcli.name_matching import did_you_mean

DEFAULT_SEEDS = 3
# Names that become folders (an arm's, a workload's, the comparison's): never a path.
FOLDER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]*")
FOLDER_NAME_RULE = "letters, digits and _ . + - only, starting with a letter or digit"


class CompareFile(Strict):
    name: str | None = None
    base: str | dict[str, Any] | None = None  # one task's config; or workloads: (suite.py), several
    workloads: dict[str, Any] | None = None
    tau_max: float = Field(4.0, gt=1)  # a suite's performance profile runs from 1 to tau_max
    seeds: list[int] | int = DEFAULT_SEEDS
    metric: str | None = None  # default: val_loss when the arms have validation data, else final_loss
    target_loss: float | None = None
    target: dict[str, Any] | None = None  # one validation metric (or loss) and the value to reach
    runs: dict[str, dict[str, Any] | None] = Field(min_length=1)
    # A tuned comparison (tuning.py): trials per arm, how they are drawn, the space, their seeds.
    budget: int | None = Field(None, ge=1)
    search: Literal["quasirandom", "grid"] = "quasirandom"
    tune: dict[str, Any] | None = None
    tune_seeds: list[int] | None = None

    @field_validator("name")
    @classmethod
    def _name_is_a_folder_name(cls, name: str | None) -> str | None:
        if name is not None and not FOLDER_NAME.fullmatch(name):
            raise ValueError(f"'{name}' names the comparison's folder: {FOLDER_NAME_RULE}")
        return name

    @field_validator("workloads")
    @classmethod
    def _workloads_are_folder_names(cls, workloads: dict[str, Any] | None) -> dict[str, Any] | None:
        # Each workload's runs go to <suite>/<workload>/: a name such as ../../x would leave the suite.
        for name in workloads or {}:
            if not FOLDER_NAME.fullmatch(name):
                raise ValueError(f"'{name}' names the workload's folder: {FOLDER_NAME_RULE}")
        return workloads


@dataclass(frozen=True)
class DraftArm:
    name: str
    config: RawConfig  # the arm's config mapping, `--set` applied, seed not yet set


@dataclass(frozen=True)
class DraftPlan:
    """A comparison as its files and command line give it, not yet checked: check_plan turns it into
    a ComparisonPlan, or says what is wrong with it."""

    name: str
    arms: tuple[DraftArm, ...]
    seeds: tuple[int, ...]
    metric: str | None  # None: the default for the arms' data, which check_plan settles
    target: Target | None
    output_dir: Path
    tuning: DraftTuning | None = None


@dataclass(frozen=True)
class Arm:
    name: str
    config: RawConfig  # the arm's config mapping, `--set` applied, seed not yet set
    spec: RunSpec  # the arm resolved; every seed's run uses it


@dataclass(frozen=True)
class ComparisonPlan:
    """A checked comparison: every arm resolved, the metric that ranks them settled."""

    name: str
    arms: tuple[Arm, ...]
    seeds: tuple[int, ...]
    metric: str  # what ranks the arms
    metric_info: MetricInfo  # its facts: its direction and the words a verdict uses
    target: Target | None  # what steps_to_target and time_to_target count to
    output_dir: Path
    validation_metrics: tuple[str, ...]  # the validation metrics every arm reports (none without data)
    tuning: Tuning | None  # a tuned comparison's trials

    @property
    def has_validation(self) -> bool:
        return bool(self.validation_metrics)

    def spec_for(self, arm: Arm, seed: int) -> RunSpec:
        """The arm's run with this seed: resolving does not depend on the seed, so one resolution
        serves every seed (the seeds' range is checked with the seeds)."""
        return replace(arm.spec, seed=seed)


class CommandLine(BaseModel):
    """What the command line adds to the files, each None when not given: one model, which
    comparison.json keeps (output_dir as text) so that --resume goes on with the same."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)
    overrides: list[str] = []
    seeds: str | None = None
    metric: str | None = None
    target_loss: float | None = None
    output_dir: Annotated[Path | None, Field(strict=False)] = None  # (read back from comparison.json's text)
    time: str | None = None  # a suite's profile: "steps" (the default) or "seconds"

    def any_given(self) -> bool:
        return self != CommandLine()


def load_plan(paths: list[Path], command_line: CommandLine) -> ComparisonPlan:
    """Read a compare file, or several config files (each an arm), and check the whole comparison."""
    if not paths:
        raise ConfigError("give a compare file, or two or more config files to compare")
    if command_line.time is not None:
        raise ConfigError("--time measures a suite's performance profile: a compare file with workloads:")
    if len(paths) == 1:
        values = load_yaml_mapping(paths[0])
        if "runs" not in values:
            raise ConfigError(
                f"{paths[0]}: a compare file needs runs: (the arms to compare, each a mapping of changes "
                "to the base config); to compare config files, give two or more of them"
            )
        plan = plan_from_compare_file(paths[0], values, command_line)
    else:
        plan = _plan_from_config_files(paths, command_line)
    return check_plan(plan)


def read_compare_file(path: Path, values: dict[str, Any]) -> CompareFile:
    try:
        compare = CompareFile.model_validate(values)
    except ValidationError as error:
        raise ConfigError([f"{path}: {line}" for line in describe_errors(error, CompareFile)]) from None
    if (compare.base is None) == (compare.workloads is None):
        raise ConfigError(f"{path}: give base: (one task's config) or workloads: (several), one of them")
    return compare


def plan_from_compare_file(path: Path, values: dict[str, Any], command_line: CommandLine) -> DraftPlan:
    compare = read_compare_file(path, values)
    if compare.workloads is not None:
        raise ConfigError(f"{path}: a suite (workloads:); load it with load_suite")
    base_values, per_arm = arm_configs(path, compare, command_line.overrides)
    arms = [DraftArm(name, config) for name, (_, config) in per_arm.items()]
    seeds = _seeds(command_line.seeds, compare.seeds)
    tuning = read_tuning(compare.model_dump(), per_arm, seeds)
    return DraftPlan(
        name=compare.name or path.stem,
        arms=tuple(arms),
        seeds=seeds,
        metric=command_line.metric or compare.metric,
        target=_target(command_line, compare, path),
        output_dir=command_line.output_dir or _output_dir(base_values),
        tuning=tuning,
    )


def _target(command_line: CommandLine, compare: CompareFile, path: Path) -> Target | None:
    """--target-loss, else the file's target: or target_loss:."""
    if command_line.target_loss is not None:
        return read_target(None, command_line.target_loss, "--target-loss")
    return read_target(compare.target, compare.target_loss, f"{path}: target")


def arm_configs(
    path: Path, compare: CompareFile, overrides: list[str]
) -> tuple[dict[str, Any], dict[str, tuple[Any, RawConfig]]]:
    """The base config's values, and each arm's tune mapping and config (the base with its changes)."""
    assert compare.base is not None, "a suite's workloads are each planned as a compare file of their own"
    if isinstance(compare.base, str):
        base_path = (path.parent / compare.base).resolve()
        base_values, base_dir, base_stem = load_yaml_mapping(base_path), base_path.parent, base_path.stem
    else:
        base_values, base_dir, base_stem = compare.base, path.resolve().parent, path.stem
    arms = {}
    for name, given in compare.runs.items():
        changes = dict(given or {})
        tune = changes.pop("tune", None)  # the arm's own dimensions, added to the common space
        values = _apply(merge_arm(base_values, changes), overrides, name)
        tuned = {*(compare.tune or {}), *(tune or {})}
        values, carried = _set_tuned(values, carried_over(base_values, values), tuned)
        arms[name] = (tune, RawConfig(values, base_dir, base_stem, carried))
    return base_values, arms


def _set_tuned(
    values: dict[str, Any], carried: dict[str, dict[str, Any]], tuned: set[str]
) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """An argument carried over from the base's class that the comparison tunes (optimizer.lr when an
    arm switches to SGD) is set by every trial: written into the arm's section instead of carried, so
    that no note says it was kept."""
    for section, arguments in carried.items():
        taken = {key: value for key, value in arguments.items() if f"{section}.{key}" in tuned}
        if taken:
            given = values[section] if isinstance(values[section], dict) else {"name": values[section]}
            values = {**values, section: {**given, **taken}}
    left = {
        section: {key: value for key, value in arguments.items() if f"{section}.{key}" not in tuned}
        for section, arguments in carried.items()
    }
    return values, {section: arguments for section, arguments in left.items() if arguments}


def _plan_from_config_files(paths: list[Path], command_line: CommandLine) -> DraftPlan:
    arms = []
    for path in paths:
        original = load_yaml_mapping(path)
        values = _apply(original, command_line.overrides, str(path))
        name = values["name"] if isinstance(values.get("name"), str) else path.stem
        arms.append(
            DraftArm(
                name, RawConfig(values, path.resolve().parent, path.stem, carried_over(original, values))
            )
        )
    names = [arm.name for arm in arms]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise ConfigError(
            f"arms must have different names; {', '.join(repeated)} appears more than once "
            "(set name: in the config files)"
        )
    return DraftPlan(
        name="-".join(names)[:80],
        arms=tuple(arms),
        seeds=_seeds(command_line.seeds, DEFAULT_SEEDS),
        metric=command_line.metric,
        target=read_target(None, command_line.target_loss, "--target-loss"),
        output_dir=command_line.output_dir or _output_dir(arms[0].config.values),
    )


def _apply(values: dict[str, Any], overrides: list[str], arm: str) -> dict[str, Any]:
    try:
        return apply_overrides(values, overrides)
    except ConfigError as error:
        raise ConfigError([f"arm '{arm}': {problem}" for problem in error.problems]) from None


def _output_dir(values: dict[str, Any]) -> Path:
    output = values.get("output")
    directory = output.get("dir") if isinstance(output, dict) else None
    return Path(directory) if isinstance(directory, str) else Path("runs")


def parse_seeds(text: str) -> tuple[int, ...]:
    """`--seeds 3` is seeds 0, 1, 2; `--seeds 0,1,2` names them."""
    parts = [part.strip() for part in text.split(",") if part.strip()]
    if not parts or not all(part.isdigit() for part in parts):
        raise ConfigError(f"--seeds '{text}': give a count (3) or a list of seeds (0,1,2)")
    if len(parts) == 1 and "," not in text:
        count = int(parts[0])
        if count < 1:
            raise ConfigError(
                "--seeds 0: a count of seeds must be at least 1; for the single seed 0, write --seeds 0,"
            )
        return tuple(range(count))
    return tuple(int(part) for part in parts)


def _seeds(command_line: str | None, from_file: list[int] | int) -> tuple[int, ...]:
    if command_line is not None:
        seeds = parse_seeds(command_line)
    elif isinstance(from_file, int):
        if from_file < 1:
            raise ConfigError("seeds: the count must be at least 1")
        seeds = tuple(range(from_file))
    else:
        seeds = tuple(from_file)
    if not seeds or len(set(seeds)) != len(seeds) or min(seeds) < 0 or max(seeds) >= 2**32:
        raise ConfigError(f"seeds: give distinct seeds from 0 to 2**32 - 1, got {list(seeds)}")
    return seeds


def measured_metrics(arms: Sequence[Arm], validation: tuple[str, ...]) -> tuple[Metric, ...]:
    """The metrics behind the validation columns every arm reports (their facts: metrics/table.py)."""
    return tuple(m for m in arms[0].spec.metrics if f"val_{m.column}" in validation) if arms else ()


def check_plan(plan: DraftPlan) -> ComparisonPlan:
    """Resolve every arm; raise one ConfigError naming each arm's problems. The plan
    comes back with its metric settled: val_loss by default when every arm has validation data."""
    from optcli.config.resolve import resolve_config  # torch loads here, not when the CLI starts

    problems = []
    with_validation = []
    arms = []
    for arm in plan.arms:
        if not FOLDER_NAME.fullmatch(arm.name):
            problems.append(
                f"arm '{arm.name}': the name must be usable as a folder name ({FOLDER_NAME_RULE})"
            )
            continue
        values = {**arm.config.values, "seed": plan.seeds[0], "name": arm.name}
        try:
            spec = resolve_config(replace(arm.config, values=values))
        except ConfigError as error:
            problems += [f"arm '{arm.name}': {problem}" for problem in error.problems]
            continue
        with_validation.append(spec.validation_metrics)
        arms.append(Arm(arm.name, arm.config, spec))
    validation = (
        tuple(m for m in with_validation[0] if all(m in own for own in with_validation))
        if with_validation
        else ()
    )
    first = arms[0].spec if arms else None
    measured = measured_metrics(arms, validation)
    metric = plan.metric or ("val_loss" if validation else "final_loss")
    choices = [*METRIC_INFO, *(name for name in validation if name not in METRIC_INFO)]
    info = metric_info(metric, measured)
    if info is None and not (metric.startswith("val_") and problems):
        problems.append(
            f"metric: '{metric}' is not a metric{did_you_mean(metric, choices)}; choose from: {', '.join(choices)}"
        )
    elif metric.startswith("val_") and metric not in validation and first:
        problems.append(
            f"metric: {metric} needs validation data in every arm (data.val_fraction or data.val), and the "
            f"metric in every arm's metrics:; every arm reports: {', '.join(validation) or 'none'}"
        )
    if metric in TARGET_METRICS and plan.target is None:
        problems.append(
            f"metric: {metric} needs a target: --target-loss, or target_loss: or target: in the compare file"
        )
    target = plan.target
    if target is not None and target.metric != "loss" and first:
        if target.metric not in validation:
            problems.append(
                f"target: '{target.metric}' is not a metric every arm reports{did_you_mean(target.metric, validation)} "
                f"(validation metrics need validation data, and the metric in metrics:); every arm reports: "
                f"{', '.join(validation) or 'none'}"
            )
        else:
            target = replace(target, lower_is_better=first.direction(target.metric) == "min")
    tuning = None
    if plan.tuning is not None and not problems:
        tuning, found = resolve_trials(plan.tuning, plan.tuning.seeds[0])
        problems += found
    if problems or info is None:  # (no metric's facts: its problem is among them)
        raise ConfigError(problems)
    return ComparisonPlan(
        name=plan.name,
        arms=tuple(arms),
        seeds=plan.seeds,
        metric=metric,
        metric_info=info,
        target=target,
        output_dir=plan.output_dir,
        validation_metrics=validation,
        tuning=tuning,
    )
