"""Every shipped config validates, says how to run it, and trains for a few steps."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO, assert_clean_exit, invoke, read_summary, train_ok

CONFIGS = sorted((REPO / "configs").glob("*.yaml"))
COMPARE_CONFIGS = [path for path in CONFIGS if "runs" in yaml.safe_load(path.read_text())]  # and suites
TRAIN_CONFIGS = [path for path in CONFIGS if path not in COMPARE_CONFIGS]


def source_run(path: Path, out: Path) -> list[str]:
    """A fine-tuning config starts from another config's run: train that one first, as its header says."""
    init = (yaml.safe_load(path.read_text())["model"]).get("init")
    if init is None:
        return []
    source = Path(init).name  # runs/fruit_csv: the newest run of configs/fruit_csv.yaml
    assert f"optcli train configs/{source}.yaml" in path.read_text().split("\n\n")[0]
    train_ok(REPO / "configs" / f"{source}.yaml", out, "--set", "train.epochs=1")
    return ["--set", f"model.init={out / source}"]


@pytest.mark.parametrize("path", TRAIN_CONFIGS, ids=lambda path: path.name)
def test_config_has_a_header_and_trains(tmp_path, path):
    header = path.read_text().split("\n\n")[0]
    assert header.startswith("#") and f"optcli train configs/{path.name}" in header
    init = source_run(path, tmp_path / "sources")
    checked = invoke("check", path, "--strict", *init)  # shipped configs draw no warning either
    assert_clean_exit(checked, 0)
    run_dir = train_ok(path, tmp_path / "runs", "--max-steps", "3", *init)
    summary = read_summary(run_dir)
    assert summary["status"] == "completed" and summary["steps"] == 3


def one_trial_per_arm(path: Path, tmp_path: Path) -> Path:
    """A tuned comparison or suite with one tuning trial per arm, its other files where they are: the
    shipped budgets are a benchmark's (a suite's 8 trials per arm are 240 runs), not a smoke test's."""
    compare = yaml.safe_load(path.read_text())
    if "budget" not in compare:
        return path
    compare["budget"] = 1
    for workload in compare.get("workloads", {}).values():
        workload["config"] = str(path.parent / workload["config"])
    if isinstance(compare.get("base"), str):
        compare["base"] = str(path.parent / compare["base"])
    shortened = tmp_path / path.name
    shortened.write_text(yaml.safe_dump(compare))
    return shortened


# The comparisons that run for more than a few seconds even cut short (a suite, a language model).
LONG = ("suite_small.yaml", "compare_lm.yaml")


@pytest.mark.parametrize(
    "path",
    [pytest.param(path, marks=pytest.mark.slow) if path.name in LONG else path for path in COMPARE_CONFIGS],
    ids=lambda path: path.name,
)
def test_compare_config_has_a_header_and_runs(tmp_path, path):
    header = path.read_text().split("\n\n")[0]
    assert header.startswith("#") and f"optcli compare configs/{path.name}" in header
    assert_clean_exit(invoke("check", path), 0)  # the file as shipped, budget and all
    shortened = one_trial_per_arm(path, tmp_path)
    result = invoke(
        "compare", shortened, "--seeds", "1", "--set", "train.max_steps=5", "--out", tmp_path / "out"
    )
    assert_clean_exit(result, 0)
    directory = next(tmp_path.glob("out/compare-*/*"))
    if (directory / "suite.json").is_file():  # a suite: every workload's comparison completed
        summaries = list(directory.glob("*/summary.json"))
        assert len(summaries) == len(yaml.safe_load(path.read_text())["workloads"])
    else:
        summaries = [directory / "summary.json"]
    assert all('"status": "completed"' in summary.read_text() for summary in summaries)
