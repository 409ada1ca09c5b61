"""Any file optcli is given to check or run: a config, a compare file or a suite, told apart by its
keys, and checked whole (`optcli check`, and the structural check `train` makes before torch loads)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import ValidationError

from optcli.compare.planning.plan import CommandLine, CompareFile, arm_configs, load_plan
from optcli.compare.planning.suite_plan import is_suite, load_suite
from optcli.config.yaml_loader import load_yaml_mapping
from optcli.errors import ConfigError

if TYPE_CHECKING:
    from optcli.config.spec import RunSpec


def check_structure(path: Path, overrides: list[str]) -> None:
    """Raise the mistakes of a config's (or every arm's) structure: YAML syntax, unknown or misspelled
    keys and wrong types of optcli's own keys. None of this needs torch, so such a file is answered
    at once; what needs torch (a class's own arguments) is checked after, when this passes."""
    from optcli.config.loading import load_config
    from optcli.config.schema import validate_file

    values = load_yaml_mapping(path)
    if "runs" not in values:
        problems = validate_file(load_config(path, overrides).values)[1]
    else:
        try:
            compare = CompareFile.model_validate(values)
        except ValidationError:
            return  # reported with the compare file's other problems, as compare reports them
        if compare.base is None:
            return  # a suite: each workload is checked whole when the suite loads
        arms = arm_configs(path, compare, overrides)[1]
        problems = [
            f"arm '{name}': {problem}"
            for name, (_, config) in arms.items()
            for problem in validate_file(config.values)[1]
        ]
    if problems:
        raise ConfigError(
            problems, "(the arguments of the classes the config names are checked once these are fixed)"
        )


def check_file(path: Path, overrides: list[str]) -> tuple[dict[str, RunSpec], str]:
    """`optcli check` on a config (its run under the key "") or a compare file (every arm, as compare
    checks it): the resolved runs and the whole in one line."""
    from optcli.config.loading import load_config
    from optcli.config.resolve import resolve_config

    values = load_yaml_mapping(path)
    if "runs" not in values:
        spec = resolve_config(load_config(path, overrides))
        return {"": spec}, spec.outline()
    if is_suite(values):
        suite = load_suite(path, values, CommandLine(overrides=overrides))
        specs = {
            f"{workload}/{arm.name}": arm.spec for workload, plan in suite.workloads for arm in plan.arms
        }
        names = ", ".join(workload for workload, _ in suite.workloads)
        return specs, (
            f"a suite of {len(suite.workloads)} workloads ({names}) x {len(suite.arms)} arms ({', '.join(suite.arms)}) "
            f"over {len(suite.seeds)} seeds, scored by performance profiles of the {suite.time} to each target"
        )
    plan = load_plan([path], CommandLine(overrides=overrides))
    specs = {arm.name: arm.spec for arm in plan.arms}
    seeds = len(plan.seeds)
    tuned = f", each tuned with {plan.tuning.budget} trials first" if plan.tuning else ""
    return (
        specs,
        f"a comparison of {len(specs)} arms ({', '.join(specs)}){tuned} over {seeds} seeds, ranked by "
        f"{plan.metric}",
    )
