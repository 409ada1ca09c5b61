"""A tuned comparison: every arm gets the same declared budget of trials, selected on validation data,
and only the selected settings, rerun on fresh seeds, are ranked.

Phase 1 trains `budget` trials per arm on `tune_seeds` and picks each arm's best by the comparison's
metric (a trial that diverges or fails is the worst, not an error); phase 2 reruns each arm's pick on
`seeds`. The test set never selects: the metric is a training or validation metric.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from optcli.compare.planning.spaces import Dimension, parse_space, trial_points
from optcli.config.loading import RawConfig, apply_overrides
from optcli.errors import ConfigError

if TYPE_CHECKING:
    from optcli.compare.judging.ranking import RunResult
    from optcli.config.spec import RunSpec

DEFAULT_TUNE_SEEDS = (100,)


@dataclass(frozen=True)
class TrialPoint:
    """A trial as drawn from its arm's space, not yet resolved."""

    arm: str
    index: int  # 1, 2, ... within its arm
    setting: dict[str, Any]  # tuned key -> value
    config: RawConfig  # the arm's config with the setting applied


@dataclass(frozen=True)
class Trial(TrialPoint):
    spec: RunSpec  # the trial's config resolved


@dataclass(frozen=True)
class TuningBudget:
    """What every arm of a tuned comparison gets alike: trials, how they are drawn, their seeds."""

    budget: int
    search: Literal["quasirandom", "grid"]
    seeds: tuple[int, ...]  # the seeds trials run on
    spaces: dict[str, dict[str, Dimension]]  # each arm's space


@dataclass(frozen=True)
class DraftTuning(TuningBudget):
    """A tuned comparison as the compare file gives it: resolve_trials checks its trials."""

    points: tuple[TrialPoint, ...]


@dataclass(frozen=True)
class Tuning(TuningBudget):
    """A checked tuned comparison: every trial resolved."""

    trials: tuple[Trial, ...]

    def protocol(self, metric: str, seeds: tuple[int, ...]) -> str:
        """The protocol in words, for the verdict."""
        # The key's last part ("lr"), or a part's name with it ("muon.lr"): what tells them apart.
        keys = sorted({_short_key(key) for space in self.spaces.values() for key in space})
        kind = "quasi-random trials" if self.search == "quasirandom" else "grid points"
        on = ", ".join(map(str, self.seeds))
        return (
            f"each arm tuned with {self.budget} {kind} of {' and '.join(keys)} on seed{'s' * (len(self.seeds) > 1)} "
            f"{on}, selected by {metric}, then rerun on seeds {', '.join(map(str, seeds))}"
        )


def _short_key(key: str) -> str:
    """A tuned key in the verdict's words: its last part ("lr"), or a part's with its name ("muon.lr")."""
    part = key.removeprefix("optimizer.parts.")
    return part if part != key else key.rpartition(".")[2]


def read_tuning(
    values: dict[str, Any], arms: dict[str, tuple[dict[str, Any], RawConfig]], seeds: tuple[int, ...]
) -> DraftTuning | None:
    """The compare file's budget, search, tune and tune_seeds, and each arm's own `tune:` (given in
    `arms` as the arm's tune mapping and its config): the trials to run, or None without tuning."""
    budget, search, common = (
        values.get("budget"),
        values.get("search", "quasirandom"),
        values.get("tune") or {},
    )
    own = {arm: tune for arm, (tune, _) in arms.items() if tune}
    if budget is None and not common and not own:
        return None
    problems = []
    if not (isinstance(budget, int) and not isinstance(budget, bool) and budget >= 1):
        problems.append(f"budget: trials per arm, a whole number of at least 1, got {budget!r}")
    if search not in ("quasirandom", "grid"):
        problems.append(f"search: quasirandom or grid, got {search!r}")
    tune_seeds = tuple(values.get("tune_seeds") or DEFAULT_TUNE_SEEDS)
    overlap = sorted(set(tune_seeds) & set(seeds))
    if overlap:
        problems.append(
            f"tune_seeds: {overlap} are also in seeds; the selected settings must be judged on seeds they were "
            "not selected on"
        )
    common_space, found = parse_space(common, "tune")
    problems += found
    spaces, trials = {}, []
    for arm, (tune, _) in arms.items():
        arm_space, found = parse_space(tune or {}, f"arm '{arm}': tune")
        problems += found
        spaces[arm] = {**common_space, **arm_space}
        if not spaces[arm]:
            problems.append(f"arm '{arm}': nothing to tune: give tune: in the compare file or the arm")
    # Each arm's points are drawn even when something else is wrong, so that a grid of the wrong
    # size is reported with the rest, not after they are fixed.
    drawable = isinstance(budget, int) and not isinstance(budget, bool) and budget >= 1
    drawable = drawable and search in ("quasirandom", "grid")
    for arm, (_, config) in arms.items():
        if not (drawable and isinstance(budget, int) and spaces[arm]):
            continue
        try:
            points = trial_points(spaces[arm], budget, search)
        except ConfigError as error:
            problems += [f"arm '{arm}': {problem}" for problem in error.problems]
            continue
        for index, setting in enumerate(points, 1):
            trials.append(TrialPoint(arm, index, setting, _with_setting(config, setting, arm, index)))
    if problems:
        raise ConfigError(problems)
    assert isinstance(budget, int)
    return DraftTuning(budget, search, tune_seeds, spaces, tuple(trials))


def _with_setting(config: RawConfig, setting: dict[str, Any], arm: str, index: int) -> RawConfig:
    overrides = [f"{key}={json.dumps(value)}" for key, value in setting.items()]  # JSON reads as YAML
    try:
        return replace(config, values=apply_overrides(config.values, overrides))
    except ConfigError as error:
        raise ConfigError([f"arm '{arm}' trial {index}: {problem}" for problem in error.problems]) from None


def resolve_trials(tuning: DraftTuning, seed: int) -> tuple[Tuning, list[str]]:
    """Every trial's config resolved (a value its class rejects is a problem naming the trial)."""
    from optcli.config.resolve import resolve_config

    resolved: list[Trial] = []
    failed: dict[str, dict[str, list[TrialPoint]]] = {}  # arm -> problem -> the trials that have it
    for trial in tuning.points:
        values = {**trial.config.values, "seed": seed, "name": f"{trial.arm}-trial{trial.index}"}
        try:
            spec = resolve_config(replace(trial.config, values=values))
        except ConfigError as error:
            for problem in error.problems:
                failed.setdefault(trial.arm, {}).setdefault(problem, []).append(trial)
            continue
        resolved.append(Trial(trial.arm, trial.index, trial.setting, trial.config, spec))
    checked = Tuning(tuning.budget, tuning.search, tuning.seeds, tuning.spaces, tuple(resolved))
    return checked, _trial_problems(failed, tuning)


def _trial_problems(failed: dict[str, dict[str, list[TrialPoint]]], tuning: DraftTuning) -> list[str]:
    """One line for a problem every trial of an arm has (a misspelled tune key), else one per trial,
    naming its setting (a value its class rejects)."""
    lines = []
    everywhere = _keys_failing_in_every_arm(failed, tuning)
    for key, problem in everywhere.items():
        lines.append(f"tune.{problem} (in every arm)" if problem.startswith(key) else f"tune: {problem}")
    for arm, by_problem in failed.items():
        trials_of_arm = sum(trial.arm == arm for trial in tuning.points)
        for problem, trials in by_problem.items():
            if _key_of(problem) in everywhere:
                continue
            if len(trials) == trials_of_arm > 1:
                lines.append(f"arm '{arm}': tune (every trial): {problem}")
                continue
            for trial in trials:
                shown = ", ".join(
                    f"{key}={value:.4g}" if isinstance(value, float) else f"{key}={value}"
                    for key, value in trial.setting.items()
                )
                lines.append(f"arm '{arm}' trial {trial.index} ({shown}): {problem}")
    return lines


def _key_of(problem: str) -> str:
    return problem.split(": ", 1)[0]


def _keys_failing_in_every_arm(
    failed: dict[str, dict[str, list[TrialPoint]]], tuning: DraftTuning
) -> dict[str, str]:
    """A tuned key that every trial of every arm rejects (a misspelling in the common tune:): the key
    and the first arm's problem with it, to say once."""
    arms = list(dict.fromkeys(trial.arm for trial in tuning.points))
    shared = set.intersection(*(set(tuning.spaces[arm]) for arm in arms)) if arms else set()
    found = {}
    for key in sorted(shared):
        per_arm = [
            next(
                (
                    problem
                    for problem, trials in failed.get(arm, {}).items()
                    if _key_of(problem) == key and len(trials) == sum(t.arm == arm for t in tuning.points)
                ),
                None,
            )
            for arm in arms
        ]
        if len(arms) > 1 and all(per_arm):
            found[key] = str(per_arm[0])
    return found


@dataclass(frozen=True)
class Selection:
    trial: Trial
    value: float | None  # the trial's metric, averaged over the tune seeds (None: every run diverged)


def select(
    tuning: Tuning, results: dict[tuple[str, int], list[RunResult]], metric: str, lower_is_better: bool
) -> dict[str, Selection]:
    """Each arm's best trial by the metric's mean over the tune seeds; a trial with a diverged or failed
    run counts as the worst. Ties go to the earlier trial."""
    chosen: dict[str, Selection] = {}
    for trial in tuning.trials:
        value = trial_value(results.get((trial.arm, trial.index), []), metric)
        current = chosen.get(trial.arm)
        if current is None or _better(value, current.value, lower_is_better):
            chosen[trial.arm] = Selection(trial, value)
    return chosen


def trial_value(runs: list[RunResult], metric: str) -> float | None:
    values = [run.metric(metric) for run in runs]
    if not values or any(value is None or not math.isfinite(value) for value in values):
        return None
    return math.fsum(value for value in values if value is not None) / len(values)


def _better(value: float | None, best: float | None, lower_is_better: bool) -> bool:
    if value is None:
        return False
    if best is None:
        return True
    return value < best if lower_is_better else value > best


def edge_warnings(tuning: Tuning, chosen: dict[str, Selection]) -> list[str]:
    """A selected value at its space's edge: the space was probably too small."""
    warnings = []
    for arm, selection in chosen.items():
        for key, value in selection.trial.setting.items():
            dimension = tuning.spaces[arm][key]
            if dimension.kind != "values" and dimension.on_edge(value):
                shown = f"{value:.3g}" if isinstance(value, float) else str(value)
                warnings.append(
                    f"{arm}'s selected {key} = {shown} lies at the edge of its space ({dimension.describe()}): "
                    "widen the space, the best may lie beyond it"
                )
    return warnings


def write_tuning_files(
    directory: Path, tuning: Tuning, rows: list[dict[str, Any]], chosen: dict[str, Selection]
) -> None:
    """trials.csv, selected.csv and each arm's selected config as `<arm>.yaml`."""
    from optcli.train.rundir import write_atomically, write_yaml
    from optcli.train.sinks import format_number

    keys = sorted({key for space in tuning.spaces.values() for key in space})
    lines = [",".join(["arm", "trial", "seed", *keys, "metric", "status", "train_time_s"])]
    for row in rows:
        settings = [_cell(row["setting"].get(key)) for key in keys]
        lines.append(
            ",".join(
                [
                    row["arm"],
                    str(row["trial"]),
                    str(row["seed"]),
                    *settings,
                    format_number(row["metric"]),
                    row["status"],
                    format_number(row["train_time_s"]),
                ]
            )
        )
    write_atomically(directory / "trials.csv", "\n".join(lines) + "\n")
    selected = [",".join(["arm", "trial", *keys, "metric"])]
    for arm, selection in chosen.items():
        settings = [_cell(selection.trial.setting.get(key)) for key in keys]
        selected.append(
            ",".join([arm, str(selection.trial.index), *settings, format_number(selection.value)])
        )
        resolved = {**selection.trial.spec.resolved, "name": arm}
        header = (
            f"# {arm}'s selected setting (trial {selection.trial.index}): optcli train {arm}.yaml trains it\n"
        )
        write_yaml(directory / f"{arm}.yaml", resolved, header)
    write_atomically(directory / "selected.csv", "\n".join(selected) + "\n")


def _cell(value: Any) -> str:
    if value is None:
        return ""
    return repr(float(value)) if isinstance(value, float) else str(value)
