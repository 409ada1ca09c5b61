"""Which optimizer across tasks: targets on validation metrics, benchmark suites of several workloads,
and their performance profiles and scores, checked against hand computations and against the runs'
own files."""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import time
from pathlib import Path

import numpy
import pytest
import yaml

from optcli.compare.judging import profiles
from tests.conftest import (
    RAY_GROUP,
    assert_clean_exit,
    config_error,
    invoke,
    read_csv,
    rows_without_times,
    start_optcli,
    write_config,
)

INF = math.inf

# --- the profile and the score, by hand ------------------------------------------------------------------

# Four workloads, four arms, τ_max 4: a tie (w2), a workload no arm solves (w3), a ratio past τ_max
# (b on w4), an arm that solves none (d).
TIMES = {
    "w1": {"a": 10.0, "b": 20.0, "c": INF, "d": INF},
    "w2": {"a": INF, "b": 30.0, "c": 30.0, "d": INF},
    "w3": {"a": INF, "b": INF, "c": INF, "d": INF},
    "w4": {"a": 5.0, "b": 25.0, "c": 5.0, "d": INF},
}


def test_ratios_to_the_fastest_arm_by_hand():
    assert profiles.ratios(TIMES) == {
        "w1": {"a": 1.0, "b": 2.0, "c": INF, "d": INF},
        "w2": {"a": INF, "b": 1.0, "c": 1.0, "d": INF},
        "w3": {"a": INF, "b": INF, "c": INF, "d": INF},
        "w4": {"a": 1.0, "b": 5.0, "c": 1.0, "d": INF},
    }
    assert profiles.fastest(TIMES["w2"]) == ["b", "c"] and profiles.fastest(TIMES["w3"]) == []


def test_the_profile_by_hand():
    per_arm = profiles.by_arm(profiles.ratios(TIMES), "abcd")
    assert [profiles.rho(per_arm["a"], tau) for tau in (1, 1.99, 4, 100)] == [0.5, 0.5, 0.5, 0.5]
    assert [profiles.rho(per_arm["b"], tau) for tau in (1, 1.99, 2, 4, 5)] == [0.25, 0.25, 0.5, 0.5, 0.75]
    assert [profiles.rho(per_arm["c"], tau) for tau in (1, 4)] == [0.5, 0.5]
    assert [profiles.rho(per_arm["d"], tau) for tau in (1, 4, 1e9)] == [0.0, 0.0, 0.0]
    assert profiles.profile_points(profiles.ratios(TIMES), 4.0) == [1.0, 2.0, 4.0]  # 5 is past τ_max


def test_the_score_by_hand_and_by_algoperfs_integral():
    """Each workload within τ_max adds (τ_max - ratio) / (τ_max - 1), over the workloads: a 3 + 0 + 0
    + 3, b 2 + 3 + 0 + 0 (its 5 is cut off), c 0 + 3 + 0 + 3, d nothing. And AlgoPerf's definition,
    B = 1 / (τ_max - 1) ∫_1^τ_max ρ(τ) dτ, integrated numerically, agrees."""
    per_arm = profiles.by_arm(profiles.ratios(TIMES), "abcd")
    expected = {"a": 6 / 12, "b": 5 / 12, "c": 6 / 12, "d": 0.0}
    for arm, score in expected.items():
        assert profiles.score(per_arm[arm], 4.0) == pytest.approx(score, abs=1e-15)
        taus = numpy.linspace(1.0, 4.0, 300_001)
        curve = numpy.array([profiles.rho(per_arm[arm], tau) for tau in taus])
        integral = float(numpy.sum((curve[1:] + curve[:-1]) / 2 * numpy.diff(taus)))  # the trapezoid rule
        assert integral / 3.0 == pytest.approx(score, abs=1e-4)
    assert profiles.score([1.0, 1.0], 4.0) == 1.0 and profiles.score([INF], 4.0) == 0.0


def test_the_median_over_seeds_counts_a_miss_as_infinite():
    assert profiles.median_time([30, None, 10]) == 30
    assert profiles.median_time([10, 20, 30, None]) == 25
    assert profiles.median_time([10, None, None]) == INF
    assert profiles.median_time([10, 20, None, None]) == INF  # half missed: the median is not finite


# --- a target on a validation metric ---------------------------------------------------------------------


def teacher(directory: Path, **train: object) -> dict:
    return {
        "device": "cpu",
        "model": {"name": "mlp", "hidden": [32]},
        "data": {
            "name": "teacher",
            "samples": 512,
            "features": 16,
            "classes": 4,
            "val_fraction": 0.25,
            "batch_size": 32,
        },
        "optimizer": {"name": "adam", "lr": 0.003},
        "train": {"epochs": 8, "threads": 1, **train},
    }


def diabetes() -> dict:
    return {
        "device": "cpu",
        "model": {"name": "mlp", "hidden": [32]},
        "data": {"name": "diabetes", "val_fraction": 0.25, "normalize": True, "batch_size": 32},
        "optimizer": {"name": "adam", "lr": 0.01},
        "train": {"epochs": 12, "threads": 1},
    }


ARMS = {
    "adam": {"optimizer": {"name": "adam", "lr": 0.003}},
    "sgd": {"optimizer": {"name": "sgd", "lr": 0.05, "momentum": 0.9}},
}


def test_steps_and_time_to_a_validation_target_are_read_from_the_runs_own_evaluations(tmp_path):
    """target: {val_accuracy: …} with evaluations every 5 steps: each run's steps_to_target is the
    first evaluation (evals.csv within epochs, epochs.csv at their ends) that reached it."""
    write_config(tmp_path, teacher(tmp_path, eval_every=5), "base.yaml")
    compare = {
        "base": "base.yaml",
        "seeds": 2,
        "target": {"val_accuracy": 0.6},
        "metric": "steps_to_target",
        "runs": ARMS,
    }
    result = invoke(
        "compare", write_config(tmp_path, compare, "c.yaml"), "--out", tmp_path / "out", "--quiet"
    )
    assert_clean_exit(result, 0)
    directory = next((tmp_path / "out").glob("compare-*/*"))
    assert "reached the target val_accuracy 0.6 in the fewest steps" in result.stdout
    reached = 0
    for row in read_csv(directory / "results.csv"):
        run_dir = directory / f"{row['arm']}-seed{row['seed']}"
        checks = sorted(
            read_csv(run_dir / "evals.csv") + read_csv(run_dir / "epochs.csv"),
            key=lambda check: int(check["step"]),
        )
        first = next((check for check in checks if float(check["val_accuracy"]) >= 0.6), None)
        if first is None:
            assert row["steps_to_target"] == "" and row["time_to_target_s"] == ""
            continue
        reached += 1
        assert int(row["steps_to_target"]) == int(first["step"])
        assert float(row["time_to_target_s"]) == float(first["elapsed_s"])
    assert reached >= 2  # the target is within reach: the check compared real values
    assert json.loads((directory / "summary.json").read_text())["target"] == {"val_accuracy": 0.6}


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ({"val_r2": 0.5}, "target: 'val_r2' is not a metric every arm reports"),
        (
            {"val_acc": 0.5},
            "target: 'val_acc' is not a metric every arm reports (did you mean 'val_accuracy'?)",
        ),
        ({"val_acc": 0.5}, "every arm reports: val_loss, val_accuracy"),
        ({"val_accuracy": 0.5, "val_loss": 0.1}, "one metric and the value to reach"),
    ],
)
def test_a_target_the_runs_cannot_have_is_refused(tmp_path, target, message):
    write_config(tmp_path, teacher(tmp_path), "base.yaml")
    compare = {"base": "base.yaml", "target": target, "runs": ARMS}
    assert message in config_error(
        invoke("compare", write_config(tmp_path, compare, "c.yaml"), "--out", tmp_path)
    )


# --- a suite ---------------------------------------------------------------------------------------------


def write_suite(directory: Path, **extra: object) -> Path:
    write_config(directory, teacher(directory), "teacher.yaml")
    write_config(directory, diabetes(), "diabetes.yaml")
    suite = {
        "name": "mini",
        "workloads": {
            "teacher": {"config": "teacher.yaml", "target": {"val_accuracy": 0.6}},
            "diabetes": {"config": "diabetes.yaml", "target": {"val_r2": 0.3}},
        },
        "seeds": 2,
        "runs": ARMS,
        **extra,
    }
    return write_config(directory, suite, "suite.yaml")


@pytest.fixture(scope="module")
def suite_run(tmp_path_factory) -> tuple[Path, str]:
    directory = tmp_path_factory.mktemp("suite")
    result = invoke("compare", write_suite(directory), "--out", directory / "out", "--jobs", "2")
    assert_clean_exit(result, 0)
    return next((directory / "out").glob("compare-mini/*")), result.stdout


def test_a_suite_runs_every_arm_on_every_workload_and_scores_them(suite_run):
    directory, stdout = suite_run
    for name in (
        "workloads.csv",
        "profile.csv",
        "profile.png",
        "suite.json",
        "teacher/results.csv",
        "diabetes/results.csv",
    ):
        assert (directory / name).is_file(), name
    rows = read_csv(directory / "workloads.csv")
    assert {(row["arm"], row["workload"]) for row in rows} == {
        (a, w) for a in ARMS for w in ("teacher", "diabetes")
    }
    # Each median from the workload's own results.csv, a seed that missed counting as infinite.
    times: dict[str, dict[str, float]] = {}
    for row in rows:
        steps = [
            float(result["steps_to_target"]) if result["steps_to_target"] else INF
            for result in read_csv(directory / row["workload"] / "results.csv")
            if result["arm"] == row["arm"]
        ]
        assert float(row["median_steps_to_target"]) == float(numpy.median(steps))
        times.setdefault(row["workload"], {})[row["arm"]] = float(numpy.median(steps))
    # The scores: the area under each profile, by hand from those medians.
    document = json.loads((directory / "suite.json").read_text())
    for arm in ARMS:
        ratios = [times[w][arm] / min(times[w].values()) for w in times]
        expected = sum((4 - ratio) for ratio in ratios if ratio <= 4) / (len(ratios) * 3)
        assert document["scores"][arm] == pytest.approx(expected, abs=1e-12)
    assert list(document["scores"]) == sorted(document["scores"], key=lambda arm: -document["scores"][arm])
    assert "performance-profile scores (steps to target" in stdout and document["verdict"] in stdout
    assert "fastest:" in document["verdict"] and "seed noise" in document["verdict"]
    # One display for the whole suite: every workload's runs, named by workload and arm.
    for workload in ("teacher", "diabetes"):
        for arm in ARMS:
            assert f"{workload}/{arm} seed 0: ok" in stdout and f"{workload}/{arm} seed 1: ok" in stdout
    profile = read_csv(directory / "profile.csv")
    assert profile[0]["tau"] == "1.0" and profile[-1]["tau"] == "4.0"


def test_a_suite_resumed_after_losing_runs_equals_the_uninterrupted_one(suite_run, tmp_path):
    """The second workload never started and a run of the first is gone: --resume runs exactly
    those, and the suite's files are the uninterrupted suite's (times aside)."""
    directory, _ = suite_run
    copy = tmp_path / "compare-mini" / directory.name
    shutil.copytree(directory, copy)
    shutil.rmtree(copy / "diabetes")
    shutil.rmtree(copy / "teacher" / "sgd-seed1")
    for name in ("workloads.csv", "profile.csv", "suite.json"):
        (copy / name).unlink()
    result = invoke("compare", "--resume", copy, "--quiet")
    assert_clean_exit(result, 0)
    assert rows_without_times(copy / "workloads.csv") == rows_without_times(directory / "workloads.csv")
    assert (copy / "profile.csv").read_text() == (directory / "profile.csv").read_text()
    resumed, whole = (json.loads((d / "suite.json").read_text()) for d in (copy, directory))
    assert resumed["scores"] == whole["scores"] and resumed["verdict"] == whole["verdict"]


def test_one_workload_of_a_suite_is_not_resumed_alone(suite_run):
    directory, _ = suite_run
    message = config_error(invoke("compare", "--resume", directory / "teacher"))
    assert f"resume the suite, optcli compare --resume {directory}" in message


@pytest.mark.slow
def test_a_suite_stopped_by_ctrl_c_and_resumed_equals_the_uninterrupted_one(tmp_path):
    longer = ("--set", "train.epochs=40", "--quiet")  # 8 runs of about half a second: time to stop midway
    path = write_suite(tmp_path)
    assert_clean_exit(invoke("compare", path, *longer, "--out", tmp_path / "whole"), 0)
    whole = next((tmp_path / "whole").glob("compare-mini/*"))
    process = start_optcli("compare", path, *longer, "--out", tmp_path / "out")
    deadline = time.monotonic() + 120
    while (
        time.monotonic() < deadline and len(list((tmp_path / "out").glob("compare-*/*/*/*/summary.json"))) < 3
    ):
        assert process.poll() is None, process.communicate()
        time.sleep(0.02)
    os.killpg(process.pid, signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130 and "optcli compare --resume" in stderr
    stopped = next((tmp_path / "out").glob("compare-mini/*"))
    assert not (stopped / "workloads.csv").exists()
    assert_clean_exit(invoke("compare", "--resume", stopped, "--quiet"), 0)
    assert rows_without_times(stopped / "workloads.csv") == rows_without_times(whole / "workloads.csv")
    assert (stopped / "profile.csv").read_text() == (whole / "profile.csv").read_text()


@RAY_GROUP
@pytest.mark.slow
def test_a_suite_on_ray_equals_the_local_one(suite_run, ray_cluster, tmp_path):
    directory, _ = suite_run
    on_ray = ("--executor", "ray", "--address", ray_cluster)
    result = invoke("compare", write_suite(tmp_path), "--out", tmp_path / "out", *on_ray, "--quiet")
    assert_clean_exit(result, 0)
    on_ray = next((tmp_path / "out").glob("compare-mini/*"))
    assert rows_without_times(on_ray / "workloads.csv") == rows_without_times(directory / "workloads.csv")
    assert (on_ray / "profile.csv").read_text() == (directory / "profile.csv").read_text()


def test_seconds_as_the_measure(tmp_path):
    result = invoke(
        "compare", write_suite(tmp_path, seeds=1), "--out", tmp_path / "out", "--time", "seconds", "--quiet"
    )
    assert_clean_exit(result, 0)
    directory = next((tmp_path / "out").glob("compare-mini/*"))
    document = json.loads((directory / "suite.json").read_text())
    assert document["time"] == "seconds" and "training seconds to target" in document["verdict"]
    for workload in ("teacher", "diabetes"):
        assert json.loads((directory / workload / "summary.json").read_text())["metric"] == "time_to_target"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            {"runs": {**ARMS, "sgd": {"optimizer": {"name": "sgd", "lr": 0.05, "momentun": 0.9}}}},
            "workload 'teacher': arm 'sgd': optimizer.momentun",
        ),
        (
            {"workloads": {"diabetes": {"config": "diabetes.yaml", "target": {"val_accuracy": 0.9}}}},
            "workload 'diabetes': target: 'val_accuracy' is not a metric every arm reports",
        ),
        (
            {"workloads": {"diabetes": {"config": "diabetes.yaml", "target": {"val_r2": 0.3}, "budgett": 3}}},
            "workloads.diabetes.budgett",
        ),
        (
            {"workloads": {"nowhere": {"config": "missing.yaml", "target": {"val_r2": 0.3}}}},
            "workload 'nowhere'",
        ),
        ({"base": "teacher.yaml"}, "give base: (one task's config) or workloads: (several), one of them"),
        (  # each workload's runs go to <suite>/<workload>/: a name never leaves the suite's folder
            {"workloads": {"../../../x": {"config": "diabetes.yaml", "target": {"val_r2": 0.3}}}},
            "workloads: '../../../x' names the workload's folder: letters, digits and _ . + - only",
        ),
        ({"name": "a/../../x"}, "name: 'a/../../x' names the comparison's folder"),
    ],
)
def test_every_workload_and_arm_is_checked_before_anything_runs(tmp_path, change, message):
    path = write_suite(tmp_path, **change)
    result = invoke("compare", path, "--out", tmp_path / "out")
    assert message in config_error(result)
    assert not (tmp_path / "out").exists()
    assert message in config_error(invoke("check", path))


def test_metric_and_target_loss_do_not_apply_to_a_suite(tmp_path):
    message = config_error(
        invoke("compare", write_suite(tmp_path), "--metric", "val_loss", "--out", tmp_path)
    )
    assert "do not apply to a suite" in message


def test_a_tuned_suite_tunes_every_arm_per_workload_with_the_same_points(tmp_path):
    """budget: and tune: apply per workload, a workload's own budget: overriding the suite's, and
    every arm of a workload is tried at the same points."""
    tuning = {
        "budget": 2,
        "tune": {"optimizer.lr": {"log_uniform": [0.001, 0.1]}},
        "tune_seeds": [100],
        "seeds": 1,
    }
    path = write_suite(tmp_path, **tuning)
    values = yaml.safe_load(path.read_text())
    values["workloads"]["diabetes"]["budget"] = 3
    path.write_text(yaml.safe_dump(values))
    result = invoke("compare", path, "--out", tmp_path / "out", "--jobs", "2", "--quiet")
    assert_clean_exit(result, 0)
    directory = next((tmp_path / "out").glob("compare-mini/*"))
    for workload, budget in (("teacher", 2), ("diabetes", 3)):
        trials = read_csv(directory / workload / "trials.csv")
        assert sorted((row["arm"], int(row["trial"])) for row in trials) == sorted(
            (arm, trial) for arm in ARMS for trial in range(1, budget + 1)
        ), workload
        settings = {arm: [row["optimizer.lr"] for row in trials if row["arm"] == arm] for arm in ARMS}
        assert settings["adam"] == settings["sgd"], workload  # the same points for every arm
    assert (directory / "workloads.csv").is_file()


@pytest.mark.slow
def test_a_suite_in_one_queue_gives_the_verdict_workload_by_workload_gives(suite_run, tmp_path):
    """--jobs 2 puts every workload's runs in one queue; --jobs 1 runs the workloads one after the
    other: the same runs, so the same numbers and the same verdict."""
    directory, _ = suite_run
    result = invoke("compare", write_suite(tmp_path), "--out", tmp_path / "out", "--jobs", "1", "--quiet")
    assert_clean_exit(result, 0)
    one_by_one = next((tmp_path / "out").glob("compare-mini/*"))
    assert rows_without_times(one_by_one / "workloads.csv") == rows_without_times(directory / "workloads.csv")
    for workload in ("teacher", "diabetes"):
        assert rows_without_times(one_by_one / workload / "results.csv") == rows_without_times(
            directory / workload / "results.csv"
        )
    verdict = json.loads((one_by_one / "suite.json").read_text())["verdict"]
    assert verdict == json.loads((directory / "suite.json").read_text())["verdict"]
