"""`optcli compare` as a user runs it: fairness, parallel equality, divergence, errors and outputs."""

from __future__ import annotations

import json
import os
import signal
import struct
import time
from pathlib import Path

import pytest
import yaml

from optcli.config.loading import merge_arm
from tests.conftest import (
    REPO,
    assert_clean_exit,
    config_error,
    importing_slowly,
    invoke,
    read_csv,
    start_optcli,
    write_config,
)

BASE = {
    "device": "cpu",
    "model": {"name": "mlp", "hidden": [16]},
    "data": {"name": "teacher", "samples": 256, "features": 8, "classes": 3, "batch_size": 32},
    "optimizer": {"name": "adam", "lr": 0.01, "betas": [0.8, 0.99]},
    "train": {"epochs": 3},
}


def compare_file(tmp_path: Path, runs: dict, **extra) -> Path:
    write_config(tmp_path, BASE, "base.yaml")
    return write_config(
        tmp_path, {"base": "base.yaml", "seeds": [0, 1], "runs": runs, **extra}, "compare.yaml"
    )


THREE_ARMS = {
    "sgd": {"optimizer": {"name": "sgd", "lr": 0.05}},
    "adam": {},
    "rmsprop": {"optimizer": {"name": "rmsprop", "lr": 0.01}},
}


def only_comparison(out: Path) -> Path:
    found = list(out.glob("compare-*/*/summary.csv"))
    assert len(found) == 1, found
    return found[0].parent


def run_compare(tmp_path: Path, *args: str | Path, out: str = "out") -> Path:
    result = invoke("compare", *args, "--out", tmp_path / out)
    assert_clean_exit(result, 0)
    return only_comparison(tmp_path / out)


@pytest.fixture(scope="module")
def comparison(tmp_path_factory) -> tuple[Path, str]:
    """One comparison of three arms over two seeds, shared by the tests that only read its files."""
    tmp_path = tmp_path_factory.mktemp("comparison")
    result = invoke("compare", compare_file(tmp_path, THREE_ARMS), "--out", tmp_path / "out")
    assert_clean_exit(result, 0)
    return only_comparison(tmp_path / "out"), result.stdout


def test_layout_and_results(comparison):
    directory, _ = comparison
    assert directory.parent.name == "compare-compare"
    expected_runs = {f"{arm}-seed{seed}" for arm in THREE_ARMS for seed in (0, 1)}
    assert {path.name for path in directory.iterdir() if path.is_dir()} == expected_runs
    for run in expected_runs:  # each run directory has the same files as `optcli train`
        assert {p.name for p in (directory / run).iterdir()} == {
            "checkpoints",
            "config.yaml",
            "data.json",
            "metrics.csv",
            "epochs.csv",
            "summary.json",
            ".optcli.lock",  # (held by the one process writing the run while it does)
        }
    results = read_csv(directory / "results.csv")
    assert list(results[0]) == [
        "arm",
        "seed",
        "status",
        "final_loss",
        "best_loss",
        "steps_to_target",
        "time_to_target_s",
        "train_time_s",
        "steps",
        "init_hash",
        "data_hash",
    ]
    assert len(results) == 6 and {row["status"] for row in results} == {"ok"}
    for row in results:  # the numbers are the run's own
        epochs = read_csv(directory / f"{row['arm']}-seed{row['seed']}" / "epochs.csv")
        assert float(row["final_loss"]) == float(epochs[-1]["train_loss"])
        assert float(row["best_loss"]) == min(float(e["train_loss"]) for e in epochs)
        assert row["steps"] == "24"


def test_fairness_same_start_and_batches_per_seed(comparison):
    directory, _ = comparison
    results = read_csv(directory / "results.csv")
    for seed in ("0", "1"):
        rows = [row for row in results if row["seed"] == seed]
        assert len({row["init_hash"] for row in rows}) == 1
        assert len({row["data_hash"] for row in rows}) == 1
        first_losses = {
            read_csv(directory / f"{row['arm']}-seed{seed}" / "metrics.csv")[0]["loss"] for row in rows
        }
        assert len(first_losses) == 1  # same weights, same first batch: the same loss before any update
    by_seed = {row["seed"]: row for row in results if row["arm"] == "adam"}
    assert by_seed["0"]["init_hash"] != by_seed["1"]["init_hash"]
    assert by_seed["0"]["data_hash"] != by_seed["1"]["data_hash"]
    first = [read_csv(directory / f"adam-seed{seed}" / "metrics.csv")[0]["loss"] for seed in (0, 1)]
    assert first[0] != first[1]


def test_arms_do_not_inherit_another_optimizers_arguments(comparison):
    directory, _ = comparison
    sgd = yaml.safe_load((directory / "sgd-seed0" / "config.yaml").read_text())
    adam = yaml.safe_load((directory / "adam-seed0" / "config.yaml").read_text())
    assert sgd["optimizer"]["name"] == "SGD" and "betas" not in sgd["optimizer"]
    assert adam["optimizer"]["betas"] == [0.8, 0.99]
    assert sgd["seed"] == 0 and sgd["name"] == "sgd"


def test_summary_ranks_by_the_mean(comparison):
    directory, stdout = comparison
    summary = read_csv(directory / "summary.csv")
    assert list(summary[0]) == [
        "rank",
        "arm",
        "metric",
        "mean",
        "std",
        "min",
        "max",
        "seeds",
        "diverged",
        "failed",
        "interrupted",
        "mean_train_time_s",
    ]
    means = [float(row["mean"]) for row in summary]
    assert means == sorted(means) and [row["rank"] for row in summary] == ["1", "2", "3"]
    results = read_csv(directory / "results.csv")
    for row in summary:
        values = [float(r["final_loss"]) for r in results if r["arm"] == row["arm"]]
        assert float(row["mean"]) == pytest.approx(sum(values) / 2)
        assert float(row["min"]) == min(values) and float(row["max"]) == max(values)
    document = json.loads((directory / "summary.json").read_text())
    assert document["winner"] == summary[0]["arm"] and document["status"] == "completed"
    assert document["verdict"] in stdout and f"{summary[0]['arm']} reached the lowest final loss" in stdout


def test_curves_png_is_a_real_image(comparison):
    directory, _ = comparison
    data = (directory / "curves.png").read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    assert width > 500 and height > 500


@pytest.mark.slow
def test_jobs_2_equals_jobs_1(tmp_path):
    path = compare_file(tmp_path, THREE_ARMS)
    one = run_compare(tmp_path, path, "--jobs", "1", out="one")
    two = run_compare(tmp_path, path, "--jobs", "2", out="two")
    keep = ("arm", "seed", "status", "final_loss", "best_loss", "steps", "init_hash", "data_hash")
    rows = [[{key: row[key] for key in keep} for row in read_csv(d / "results.csv")] for d in (one, two)]
    assert rows[0] == rows[1]
    for run in ("sgd-seed1", "rmsprop-seed0"):
        losses = [
            [(r["loss"], r["lr"], r["grad_norm"]) for r in read_csv(d / run / "metrics.csv")]
            for d in (one, two)
        ]
        assert losses[0] == losses[1]


def test_a_diverging_arm_is_marked_and_ranked_last(tmp_path):
    runs = {"wild": {"optimizer": {"name": "sgd", "lr": 1e8}}, **THREE_ARMS}
    directory = run_compare(tmp_path, compare_file(tmp_path, runs))
    results = read_csv(directory / "results.csv")
    assert {row["status"] for row in results if row["arm"] == "wild"} == {"diverged"}
    assert {row["status"] for row in results if row["arm"] != "wild"} == {"ok"}
    summary = read_csv(directory / "summary.csv")
    assert summary[-1]["arm"] == "wild" and summary[-1]["diverged"] == "2"
    assert json.loads((directory / "wild-seed0" / "summary.json").read_text())["status"] == "failed"


def test_several_config_files_are_the_arms(tmp_path):
    first = write_config(tmp_path, {**BASE, "name": "adam"}, "a.yaml")
    second = write_config(
        tmp_path, {**BASE, "name": "sgd", "optimizer": {"name": "sgd", "lr": 0.1}}, "b.yaml"
    )
    directory = run_compare(tmp_path, first, second, "--seeds", "3", "--set", "train.epochs=1")
    results = read_csv(directory / "results.csv")
    assert sorted((row["arm"], row["seed"]) for row in results) == sorted(
        (arm, str(seed)) for arm in ("adam", "sgd") for seed in range(3)
    )
    assert {row["steps"] for row in results} == {"8"}  # --set reached every arm


def test_seeds_list_metric_and_target(tmp_path):
    path = compare_file(tmp_path, THREE_ARMS)
    directory = run_compare(
        tmp_path, path, "--seeds", "4,7", "--metric", "steps_to_target", "--target-loss", "1.0"
    )
    results = read_csv(directory / "results.csv")
    assert {row["seed"] for row in results} == {"4", "7"}
    for row in results:
        epochs = read_csv(directory / f"{row['arm']}-seed{row['seed']}" / "epochs.csv")
        reached = [e for e in epochs if float(e["train_loss"]) <= 1.0]
        assert row["steps_to_target"] == (reached[0]["step"] if reached else "")
    document = json.loads((directory / "summary.json").read_text())
    assert document["metric"] == "steps_to_target" and document["target_loss"] == 1.0


def test_merge_replaces_a_section_whose_name_changes():
    base = {
        "optimizer": {"name": "adam", "lr": 0.1, "betas": [0.8, 0.9]},
        "data": {"name": "random", "batch_size": 8},
    }
    assert merge_arm(base, {"optimizer": {"name": "SGD", "lr": 0.2}})["optimizer"] == {
        "name": "SGD",
        "lr": 0.2,
    }
    assert merge_arm(base, {"optimizer": {"lr": 0.2}})["optimizer"] == {
        "name": "adam",
        "lr": 0.2,
        "betas": [0.8, 0.9],
    }
    assert merge_arm(base, {"optimizer": "sgd"})["optimizer"] == {"name": "sgd"}
    assert merge_arm(base, {"data": {"name": "teacher"}})["data"] == {"name": "teacher", "batch_size": 8}
    assert merge_arm(base, {}) == base


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            {"runs": {"adam": {"optimizer": {"name": "adam", "momentum": 0.9}}}},
            "arm 'adam': optimizer.momentum",
        ),
        ({"runs": {"bad": {"optimizer": {"name": "adma"}}}}, "arm 'bad': optimizer.name"),
        ({"runs": {"x": {}}, "metric": "speed"}, "metric"),
        ({"runs": {"x": {}}, "metric": "steps_to_target"}, "needs a target"),
        ({"runs": {"x": {}}, "seeds": 0}, "seeds"),
        ({"runs": {"x": {}}, "seeds": [1, 1]}, "distinct"),
        ({"runs": {}}, "runs"),
        ({"runs": {"x": {}}, "bsae": "base.yaml"}, "did you mean 'base'"),
        ({"runs": {"a/b": {}}}, "folder name"),
    ],
)
def test_compare_file_errors_name_the_arm_and_key(tmp_path, change, message):
    write_config(tmp_path, BASE, "base.yaml")
    path = write_config(tmp_path, {"base": "base.yaml", **change}, "compare.yaml")
    assert message in config_error(invoke("compare", path, "--out", tmp_path / "out"))
    assert not (tmp_path / "out").exists()  # nothing ran


def test_every_arm_is_checked_before_anything_runs(tmp_path):
    runs = {"good": {}, "bad": {"train": {"epochs": 0}}}
    message = config_error(invoke("compare", compare_file(tmp_path, runs), "--out", tmp_path / "out"))
    assert "arm 'bad': train.epochs" in message
    assert not (tmp_path / "out").exists()


def test_command_line_errors(tmp_path):
    path = compare_file(tmp_path, THREE_ARMS)
    assert "--seeds" in config_error(invoke("compare", path, "--seeds", "a,b"))
    single = write_config(tmp_path, BASE, "single.yaml")
    assert "two or more" in config_error(invoke("compare", single))
    same = write_config(tmp_path, BASE, "single_again.yaml")
    write_config(tmp_path, {**BASE, "name": "single"}, "other.yaml")
    assert "more than once" in config_error(invoke("compare", single, tmp_path / "other.yaml"))
    assert same.exists()
    assert invoke("compare", path, "--jobs", "0").exit_code == 2


@pytest.mark.slow
def test_ctrl_c_stops_the_workers_and_keeps_the_finished_runs(tmp_path):
    runs = {"a": {}, "b": {"optimizer": {"name": "sgd", "lr": 0.01}}}
    write_config(
        tmp_path, {**BASE, "train": {"epochs": 100000}, "data": {**BASE["data"], "samples": 64}}, "base.yaml"
    )
    path = write_config(tmp_path, {"base": "base.yaml", "seeds": 1, "runs": runs}, "compare.yaml")
    process = start_optcli("compare", path, "--jobs", "2", "--out", tmp_path / "out")
    deadline = time.monotonic() + 60

    def training() -> int:  # runs that have logged a step (a header and a row)
        files = tmp_path.glob("out/*/*/*/metrics.csv")
        return sum(len(path.read_text().splitlines()) >= 2 for path in files)

    while time.monotonic() < deadline and training() < 2:
        time.sleep(0.2)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert "Traceback" not in stderr and "interrupted" in stderr
    directory = next(tmp_path.glob("out/compare-compare/*"))
    results = read_csv(directory / "results.csv")
    assert {row["status"] for row in results} == {"interrupted"} and len(results) == 2
    for run in ("a-seed0", "b-seed0"):
        summary = json.loads((directory / run / "summary.json").read_text())
        assert summary["status"] == "interrupted" and summary["steps"] > 0
    assert json.loads((directory / "summary.json").read_text())["status"] == "interrupted"


@pytest.mark.slow
@pytest.mark.parametrize("jobs", ["1", "2"])
def test_ctrl_c_while_torch_is_imported_leaves_quietly(tmp_path, jobs):
    # A terminal's Ctrl-C reaches the fork server too, while it imports torch for the workers: it
    # printed the import's traceback. And an interrupt inside torch's C start-up could end the main
    # process by SIGINT, or leave torch half imported for a later import to fail.
    compare = REPO / "configs" / "compare_guide.yaml"
    environment, begun = importing_slowly(tmp_path, "torch")
    process = start_optcli(
        "compare", compare, "--jobs", jobs, "--out", tmp_path / "out", fresh=True, **environment
    )
    deadline = time.monotonic() + 60
    while len(list(begun.iterdir())) < (2 if jobs == "2" else 1):  # (and the fork server's, with workers)
        assert time.monotonic() < deadline and process.poll() is None, process.communicate()
        time.sleep(0.01)
    os.killpg(process.pid, signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert "Traceback" not in stderr and "interrupted" in stderr


def test_the_ranking_table_is_whole_when_output_is_piped(tmp_path):
    # Not a terminal (CliRunner, like a pipe or a CI log): no column is cut to fit 80 characters.
    runs = {"adam_with_a_rather_long_descriptive_arm_name": {}, "sgd": {"optimizer": {"name": "sgd"}}}
    path = compare_file(tmp_path, runs)
    result = invoke("compare", path, "--seeds", "1", "--out", tmp_path / "out", "--set", "train.max_steps=2")
    assert_clean_exit(result, 0)
    header = next(line for line in result.stdout.splitlines() if "rank" in line)
    assert all(name in header for name in ("rank", "arm", "mean ± std", "min", "max", "seeds", "train time"))
    assert "…" not in result.stdout and "adam_with_a_rather_long_descriptive_arm_name" in result.stdout


def test_curves_keep_the_scale_of_the_arms_that_did_not_diverge():
    from optcli.compare.reporting.curves import identical_to, loss_limits

    means = {"adam": [1.0, 0.5, 0.2], "sgd": [1.0, 40.0, 1e9], "plain": [1.0, 0.5, 0.2]}
    low, high = loss_limits(means, {"sgd"})
    assert low == 0.2 and 1.0 <= high < 1.1  # not stretched to 1e9
    assert loss_limits({"adam": means["adam"]}, set()) is None  # nothing diverged: matplotlib's own range
    assert identical_to(means) == {"plain": "adam"}


def test_curves_png_with_a_diverged_arm_and_a_validation_metric(tmp_path):
    runs = {"adam": {}, "wild": {"optimizer": {"name": "sgd", "lr": 1e6}}}
    data = {**BASE["data"], "val_fraction": 0.25}
    write_config(tmp_path, {**BASE, "data": data}, "base.yaml")
    path = write_config(tmp_path, {"base": "base.yaml", "seeds": [0], "runs": runs}, "compare.yaml")
    directory = run_compare(tmp_path, path)
    assert {row["status"] for row in read_csv(directory / "results.csv")} == {"ok", "diverged"}
    image = (directory / "curves.png").read_bytes()
    assert image.startswith(b"\x89PNG\r\n\x1a\n")
    _, height = struct.unpack(">II", image[16:24])
    assert height > 1000  # a third panel: val_loss, which ranks the arms
