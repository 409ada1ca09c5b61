"""A tuned comparison: the same budget of trials for every arm, selected on validation data, and the
ranking from fresh seeds alone."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import yaml

from tests.conftest import assert_clean_exit, config_error, invoke, read_csv, write_config

BASE = {
    "seed": 0,
    "device": "cpu",
    "model": {"name": "mlp", "hidden": [16]},
    "data": {
        "name": "teacher",
        "samples": 256,
        "features": 8,
        "classes": 3,
        "batch_size": 32,
        "val_fraction": 0.25,
    },
    "optimizer": {"name": "adam", "lr": 0.001},
    "train": {"epochs": 2},
}
TUNED = {
    "base": "base.yaml",
    "budget": 4,
    "tune": {"optimizer.lr": {"log_uniform": [1.0e-3, 1.0]}},
    "tune_seeds": [100],
    "seeds": [0, 1],
    "metric": "val_loss",
    "runs": {
        "sgd": {"optimizer": {"name": "sgd"}},
        "momentum": {
            "optimizer": {"name": "sgd", "momentum": 0.9},
            "tune": {"optimizer.momentum": {"uniform": [0.5, 0.99]}},
        },
        "adam": {"optimizer": {"name": "adam"}},
    },
}


def compare_file(directory: Path, **changes) -> Path:
    write_config(directory, BASE, "base.yaml")
    return write_config(directory, {**TUNED, **changes}, "tuned.yaml")


@pytest.fixture(scope="module")
def tuned(tmp_path_factory) -> tuple[Path, str]:
    directory = tmp_path_factory.mktemp("tuned")
    result = invoke("compare", compare_file(directory), "--out", directory / "out", "--quiet")
    assert_clean_exit(result, 0)
    return next((directory / "out").glob("compare-tuned/*")), result.stdout


def test_every_arm_gets_the_same_budget_on_the_same_points(tuned):
    directory, _ = tuned
    trials = read_csv(directory / "trials.csv")
    assert list(trials[0]) == [
        "arm",
        "trial",
        "seed",
        "optimizer.lr",
        "optimizer.momentum",
        "metric",
        "status",
        "train_time_s",
    ]
    for arm in ("sgd", "momentum", "adam"):
        own = [row for row in trials if row["arm"] == arm]
        assert [row["trial"] for row in own] == ["1", "2", "3", "4"] and {row["seed"] for row in own} == {
            "100"
        }
    rates = {
        arm: [row["optimizer.lr"] for row in trials if row["arm"] == arm]
        for arm in ("sgd", "adam", "momentum")
    }
    assert rates["sgd"] == rates["adam"]  # one space: the same quasi-random points
    assert rates["momentum"] != rates["sgd"]  # a space of its own (lr and momentum)
    assert len(set(rates["sgd"])) == 4 and all(1e-3 <= float(rate) <= 1.0 for rate in rates["sgd"])
    assert all(0.5 <= float(row["optimizer.momentum"]) <= 0.99 for row in trials if row["arm"] == "momentum")


def test_the_best_trial_on_validation_is_selected_and_rerun_on_fresh_seeds(tuned):
    directory, stdout = tuned
    trials, selected = read_csv(directory / "trials.csv"), read_csv(directory / "selected.csv")
    for row in selected:
        own = [trial for trial in trials if trial["arm"] == row["arm"] and trial["status"] == "ok"]
        best = min(own, key=lambda trial: float(trial["metric"]))
        assert row["trial"] == best["trial"] and row["metric"] == best["metric"]
        # Phase 2 trains exactly that setting, on the comparison's seeds.
        for seed in (0, 1):
            config = yaml.safe_load((directory / f"{row['arm']}-seed{seed}" / "config.yaml").read_text())
            assert config["optimizer"]["lr"] == float(row["optimizer.lr"]) and config["seed"] == seed
        arm_file = directory / f"{row['arm']}.yaml"
        assert yaml.safe_load(arm_file.read_text())["optimizer"]["lr"] == float(row["optimizer.lr"])
        assert_clean_exit(invoke("check", arm_file), 0)  # trainable as it is
    # The ranking comes from phase 2 alone: the comparison's seeds, never the tuning seed.
    assert {row["seed"] for row in read_csv(directory / "results.csv")} == {"0", "1"}
    assert (
        "Each arm tuned with 4 quasi-random trials of lr and momentum on seed 100, selected by val_loss, then rerun on seeds 0, 1."
        in stdout
    )
    assert (directory / "sensitivity.png").read_bytes().startswith(b"\x89PNG")


def test_a_diverging_trial_is_the_worst_result_not_an_error(tmp_path):
    grid = {"optimizer.lr": {"values": [0.01, 1.0e6]}}
    path = compare_file(
        tmp_path, budget=2, search="grid", tune=grid, runs={"sgd": {"optimizer": {"name": "sgd"}}}
    )
    assert_clean_exit(invoke("compare", path, "--out", tmp_path / "out", "--quiet"), 0)
    directory = next((tmp_path / "out").glob("compare-tuned/*"))
    statuses = {row["optimizer.lr"]: row["status"] for row in read_csv(directory / "trials.csv")}
    assert statuses == {"0.01": "ok", "1000000.0": "diverged"}
    assert read_csv(directory / "selected.csv")[0]["optimizer.lr"] == "0.01"


def test_a_log_grid_tries_every_point_and_an_edge_pick_is_warned_about(tmp_path):
    grid = {"optimizer.lr": {"log_grid": [1.0e-5, 1.0e-3, 3]}}  # all too small: the largest wins
    path = compare_file(tmp_path, budget=3, search="grid", tune=grid, runs={"adam": {}})
    result = invoke("compare", path, "--out", tmp_path / "out", "--quiet")
    assert_clean_exit(result, 0)
    directory = next((tmp_path / "out").glob("compare-tuned/*"))
    rates = [float(row["optimizer.lr"]) for row in read_csv(directory / "trials.csv")]
    assert rates == pytest.approx([1e-5, 1e-4, 1e-3])
    assert math.isclose(float(read_csv(directory / "selected.csv")[0]["optimizer.lr"]), 1e-3)
    assert "adam's selected optimizer.lr = 0.001 lies at the edge of its space" in result.stdout


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"tune_seeds": [0]}, "tune_seeds: [0] are also in seeds"),
        (
            {"tune": {"optimizer.lr": {"log_uniform": [0, 1]}}},
            "tune.optimizer.lr: log_uniform: a log scale needs low above 0",
        ),
        ({"tune": {"optimizer.lr": {"normal": [0, 1]}}}, "tune.optimizer.lr: give one of"),
        (
            {"tune": {"optimizer.lr": {"values": [0.1, -1.0]}}},
            "(optimizer.lr=-1): optimizer.lr: must be greater than 0",
        ),
        ({"tune": {"optimizer.lrr": {"uniform": [0.1, 0.2]}}}, "optimizer.lrr"),
        (
            {"search": "grid", "tune": {"optimizer.lr": {"log_grid": [1e-3, 1, 3]}}},
            "budget: the grid has 3 points, not the budget's 4",
        ),
        ({"budget": 0}, "budget"),
    ],
)
def test_tuning_mistakes_are_config_errors_before_anything_runs(tmp_path, changes, expected):
    message = config_error(invoke("compare", compare_file(tmp_path, **changes), "--out", tmp_path / "out"))
    assert expected in message, message
    assert not (tmp_path / "out").exists()


def test_a_misspelled_tune_key_is_one_line_with_a_suggestion(tmp_path):
    changes = {"tune": {"optimizer.learning_rate": {"log_uniform": [1e-3, 1.0]}}}
    message = config_error(invoke("check", compare_file(tmp_path, **changes)))
    lines = [line for line in message.splitlines() if "learning_rate" in line]
    assert len(lines) == 1, message
    assert "tune.optimizer.learning_rate:" in lines[0] and "(did you mean 'lr'?)" in lines[0]


def test_a_tuned_argument_an_arm_carries_over_is_not_noted_as_kept(tmp_path):
    """Every trial sets lr: 'switching to SGD kept lr' would be noise; what is not tuned is still said."""
    result = invoke("check", compare_file(tmp_path))
    assert_clean_exit(result, 0)
    assert "switching to" not in result.stderr, result.stderr
    adam = {"name": "adam", "lr": 0.001, "betas": [0.9, 0.99]}
    write_config(tmp_path, {**BASE, "optimizer": adam}, "base.yaml")
    result = invoke("check", tmp_path / "tuned.yaml")
    assert_clean_exit(result, 0)
    assert (
        "arm 'sgd': optimizer: switching to SGD starts from its own defaults; the replaced class's betas=[0.9, 0.99] not carried over"
        in result.stderr
    )


def test_a_grid_of_the_wrong_size_is_reported_beside_other_tuning_mistakes(tmp_path):
    changes = {"tune_seeds": [0], "search": "grid", "tune": {"optimizer.lr": {"log_grid": [1e-3, 1, 3]}}}
    message = config_error(invoke("check", compare_file(tmp_path, **changes)))
    assert "tune_seeds: [0] are also in seeds" in message
    assert "budget: the grid has 3 points, not the budget's 4" in message
