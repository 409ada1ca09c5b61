"""MLflow tracking (`output.mlflow`, `optcli mlflow-sync`), against a real SQLite store read back with
MlflowClient: what a run, a resumed run and a comparison put there equals their own files."""

from __future__ import annotations

import os
import signal
import socket
from pathlib import Path

import pytest
import yaml

from optcli.train.sinks.mlflow_logging import flat_params, read_state
from tests.conftest import (
    RAY_GROUP,
    assert_clean_exit,
    config_error,
    finish,
    invoke,
    one_infinite_batch,
    read_csv,
    run_dirs,
    run_optcli,
    start_optcli,
    train_ok,
    wait_for_rows,
    write_config,
)

mlflow = pytest.importorskip("mlflow")  # (the dev extra installs it: CI always runs these)


def store(directory: Path) -> str:
    return f"sqlite:///{directory / 'mlflow.db'}"


def client(uri: str):
    return mlflow.MlflowClient(tracking_uri=uri)


def tracked(uri: str, **train: object) -> dict:
    return {
        "name": "tracked",
        "device": "cpu",
        "model": {"name": "mlp", "hidden": [16]},
        "data": {
            "name": "teacher",
            "samples": 256,
            "features": 8,
            "classes": 3,
            "val_fraction": 0.25,
            "batch_size": 32,
        },
        # (The biases a group of their own, at a rate of their own: metrics.csv's lr_group1.)
        "optimizer": {"name": "adam", "lr": 0.003, "param_groups": [{"params": "*.bias", "lr": 0.001}]},
        "train": {"epochs": 4, "eval_every": 5, "threads": 1, **train},
        "output": {"mlflow": {"tracking_uri": uri}},
    }


def history(mlflow_client, run_id: str, key: str) -> list[tuple[int, float]]:
    return sorted((metric.step, metric.value) for metric in mlflow_client.get_metric_history(run_id, key))


def assert_equals_its_files(uri: str, run_dir: Path) -> str:
    """The MLflow run of `run_dir` holds what its files hold; its id."""
    mlflow_client = client(uri)
    run_id = read_state(run_dir)["run_id"]
    steps = read_csv(run_dir / "metrics.csv")
    for key in ("loss", "lr", "grad_norm", *(key for key in steps[0] if key.startswith("lr_group"))):
        logged = history(mlflow_client, run_id, key)
        assert [step for step, _ in logged] == [int(row["step"]) for row in steps], key
        assert [value for _, value in logged] == pytest.approx(
            [float(row[key]) for row in steps], rel=1e-6
        ), key
    checks = sorted(
        read_csv(run_dir / "evals.csv") + read_csv(run_dir / "epochs.csv"), key=lambda row: int(row["step"])
    )
    for key in ("val_loss", "val_accuracy"):
        logged = history(mlflow_client, run_id, key)
        assert [step for step, _ in logged] == [int(row["step"]) for row in checks], key
        assert [value for _, value in logged] == pytest.approx(
            [float(row[key]) for row in checks], rel=1e-6
        ), key
    epochs = read_csv(run_dir / "epochs.csv")
    assert [value for _, value in history(mlflow_client, run_id, "train_loss")] == pytest.approx(
        [float(row["train_loss"]) for row in epochs], rel=1e-6
    )
    run = mlflow_client.get_run(run_id)
    recorded = yaml.safe_load((run_dir / "config.yaml").read_text())
    expected = flat_params({key: value for key, value in recorded.items() if key != "output"})
    assert {key: run.data.params[key] for key in expected} == expected
    assert {"init_hash", "data_hash"} <= set(run.data.params)
    assert {"final_loss", "best_val_loss"} <= set(run.data.metrics)
    artifacts = {artifact.path for artifact in mlflow_client.list_artifacts(run_id)}
    assert {"config.yaml", "summary.json"} <= artifacts
    return run_id


def test_a_run_logged_to_a_sqlite_store_equals_its_files(tmp_path, monkeypatch):
    uri = store(tmp_path)
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")  # where the command runs: MLflow's ./mlruns would be here
    run_dir = train_ok(write_config(tmp_path, tracked(uri)), tmp_path / "runs")
    run_id = assert_equals_its_files(uri, run_dir)
    run = client(uri).get_run(run_id)
    assert run.data.metrics["lr_group1"] == pytest.approx(0.001) and run.data.metrics["lr"] == pytest.approx(
        0.003
    )
    assert run.info.status == "FINISHED" and run.info.run_name == run_dir.name
    assert run.data.tags["device"] == "cpu" and "optcli.version" in run.data.tags
    experiment = client(uri).get_experiment(run.info.experiment_id)
    assert experiment.name == "tracked"
    # The artifacts beside the store's file, not in the folder the command ran in.
    assert (tmp_path / "mlartifacts" / "tracked").is_dir() and not (
        tmp_path / "elsewhere" / "mlruns"
    ).exists()


@pytest.mark.slow
def test_a_long_run_logs_at_most_a_thousand_steps_by_default_and_config_yaml_records_which(tmp_path):
    """output.mlflow.log_every: auto. 1,200 steps, a row of metrics.csv each: MLflow gets every 2nd
    step's values (600), config.yaml says 2; a number of one's own is kept as given."""
    uri = store(tmp_path)
    run_dir = train_ok(write_config(tmp_path, tracked(uri, epochs=200, eval_every=None)), tmp_path / "runs")
    assert yaml.safe_load((run_dir / "config.yaml").read_text())["output"]["mlflow"]["log_every"] == 2
    rows = read_csv(run_dir / "metrics.csv")
    assert len(rows) == 1200
    logged = history(client(uri), read_state(run_dir)["run_id"], "loss")
    assert [step for step, _ in logged] == [int(row["step"]) for row in rows if int(row["step"]) % 2 == 0]
    assert [value for _, value in logged] == pytest.approx(
        [float(row["loss"]) for row in rows if int(row["step"]) % 2 == 0], rel=1e-6
    )
    config = tracked(uri, epochs=2)
    config["output"]["mlflow"]["log_every"] = 7
    run_dir = train_ok(write_config(tmp_path, config, "own.yaml"), tmp_path / "own")
    assert yaml.safe_load((run_dir / "config.yaml").read_text())["output"]["mlflow"]["log_every"] == 7


def test_a_failed_run_is_failed_in_mlflow(tmp_path):
    uri = store(tmp_path)
    config = {**one_infinite_batch(tmp_path), "output": {"mlflow": {"tracking_uri": uri}}}
    result = invoke("train", write_config(tmp_path, config), "--out", tmp_path / "runs")
    assert_clean_exit(result, 1)
    run_dir = run_dirs(tmp_path / "runs")[-1]
    assert client(uri).get_run(read_state(run_dir)["run_id"]).info.status == "FAILED"


@pytest.mark.slow
def test_an_interrupted_run_is_killed_and_its_resume_continues_the_same_mlflow_run(tmp_path):
    """Ctrl-C: KILLED. The resume logs into the same MLflow run, the steps between its checkpoint and
    the interruption not twice, and the whole equals the run's files."""
    uri = store(tmp_path)
    # 1,200 steps, time to stop it midway; a row every 10 steps, as SQLite takes a value at a time.
    config = tracked(uri, epochs=200, eval_every=None, log_every=10)
    path = write_config(tmp_path, config)
    process = start_optcli("train", path, "--out", tmp_path / "runs", "--quiet")
    run_dir = wait_for_rows(tmp_path / "runs", 40, process)
    os.killpg(process.pid, signal.SIGINT)
    finish(process, 120)
    assert process.returncode == 130
    state = read_state(run_dir)
    assert client(uri).get_run(state["run_id"]).info.status == "KILLED"
    resumed = invoke("resume", run_dir, "--quiet")
    assert_clean_exit(resumed, 0)
    assert read_state(run_dir)["run_id"] == state["run_id"]
    assert client(uri).get_run(state["run_id"]).info.status == "FINISHED"
    logged = history(client(uri), state["run_id"], "loss")
    assert len({step for step, _ in logged}) == len(logged)  # no step twice
    rows = read_csv(run_dir / "metrics.csv")
    assert [step for step, _ in logged] == [int(row["step"]) for row in rows]
    assert [value for _, value in logged] == pytest.approx([float(row["loss"]) for row in rows], rel=1e-6)


@pytest.mark.slow
def test_a_comparison_logs_a_parent_and_tagged_children_and_sync_gives_the_same(tmp_path):
    uri = store(tmp_path)
    write_config(tmp_path, tracked(uri, epochs=2), "base.yaml")
    compare = {
        "base": "base.yaml",
        "seeds": 2,
        "runs": {"adam": {}, "sgd": {"optimizer": {"name": "sgd", "lr": 0.05}}},
    }
    result = invoke(
        "compare",
        write_config(tmp_path, compare, "c.yaml"),
        "--jobs",
        "2",
        "--out",
        tmp_path / "out",
        "--quiet",
    )
    assert_clean_exit(result, 0)
    directory = next((tmp_path / "out").glob("compare-*/*"))
    live = client(uri)
    parent_id = read_state(directory)["run_id"]
    parent = live.get_run(parent_id)
    assert parent.info.status == "FINISHED" and "verdict" in parent.data.tags
    assert {"adam.mean", "sgd.mean"} <= set(parent.data.metrics)
    assert {artifact.path for artifact in live.list_artifacts(parent_id)} >= {"summary.json", "curves.png"}
    children = live.search_runs([parent.info.experiment_id], f"tags.mlflow.parentRunId = '{parent_id}'")
    assert sorted(
        (run.data.tags["arm"], run.data.tags["seed"], run.data.tags["phase"]) for run in children
    ) == [("adam", "0", "final"), ("adam", "1", "final"), ("sgd", "0", "final"), ("sgd", "1", "final")]
    for run_dir in sorted(directory.glob("*-seed*")):
        assert_equals_its_files(uri, run_dir)
    # The same comparison uploaded afterwards to another store: the same contents.
    (tmp_path / "other").mkdir()
    other = store(tmp_path / "other")
    synced = invoke("mlflow-sync", directory, "--tracking-uri", other)
    assert_clean_exit(synced, 0)
    copy = client(other)
    (experiment,) = [e for e in copy.search_experiments() if e.name == "c"]
    (synced_parent,) = copy.search_runs([experiment.experiment_id], "tags.`optcli.comparison` = 'c'")
    synced_children = copy.search_runs(
        [experiment.experiment_id], f"tags.mlflow.parentRunId = '{synced_parent.info.run_id}'"
    )
    assert (
        synced_parent.data.metrics == parent.data.metrics
        and synced_parent.data.tags["verdict"] == parent.data.tags["verdict"]
    )
    by_place = {(run.data.tags["arm"], run.data.tags["seed"]): run for run in children}
    for run in synced_children:
        original = by_place[(run.data.tags["arm"], run.data.tags["seed"])]
        assert run.data.params == original.data.params and run.data.metrics == original.data.metrics
        for key in ("loss", "lr_group1", "val_loss", "train_loss"):
            assert history(copy, run.info.run_id, key) == history(live, original.info.run_id, key), key


@RAY_GROUP
@pytest.mark.slow  # a Ray instance takes seconds to start
def test_a_comparison_on_ray_logs_each_child_from_its_worker(ray_cluster, tmp_path):
    uri = store(tmp_path)
    write_config(tmp_path, tracked(uri, epochs=2), "base.yaml")
    compare = {
        "base": "base.yaml",
        "seeds": [3],
        "runs": {"adam": {}, "rmsprop": {"optimizer": {"name": "rmsprop"}}},
    }
    path = write_config(tmp_path, compare, "c.yaml")
    on_ray = ("--executor", "ray", "--address", ray_cluster)
    result = invoke("compare", path, "--out", tmp_path / "out", *on_ray, "--quiet")
    assert_clean_exit(result, 0)
    directory = next((tmp_path / "out").glob("compare-*/*"))
    parent_id = read_state(directory)["run_id"]
    live = client(uri)
    experiment_id = live.get_run(parent_id).info.experiment_id
    children = live.search_runs([experiment_id], f"tags.mlflow.parentRunId = '{parent_id}'")
    assert sorted((run.data.tags["arm"], run.data.tags["seed"], run.info.status) for run in children) == [
        ("adam", "3", "FINISHED"),
        ("rmsprop", "3", "FINISHED"),
    ]
    for run_dir in sorted(directory.glob("*-seed*")):
        assert_equals_its_files(uri, run_dir)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_a_server_that_cannot_be_reached_never_stops_the_run_and_sync_uploads_it_later(tmp_path):
    down = f"http://127.0.0.1:{free_port()}"
    config = write_config(tmp_path, tracked(down))
    result = run_optcli("train", config, "--out", tmp_path / "runs", "--quiet", timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stderr.count("warning: MLflow at") == 1 and "optcli mlflow-sync" in result.stderr
    run_dir = run_dirs(tmp_path / "runs")[-1]
    uri = store(tmp_path)
    synced = invoke("mlflow-sync", run_dir, "--tracking-uri", uri)
    assert_clean_exit(synced, 0)
    assert "uploaded" in synced.stdout
    assert_equals_its_files(uri, run_dir)
    again = invoke("mlflow-sync", run_dir, "--tracking-uri", uri)
    assert "already in MLflow" in again.stdout


def test_without_the_extra_check_says_which_to_install(tmp_path, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *rest: None if name == "mlflow" else real(name, *rest)
    )
    message = config_error(invoke("check", write_config(tmp_path, tracked(store(tmp_path)))))
    assert "output.mlflow: needs the mlflow extra: pip install 'optcli[mlflow]'" in message


def test_sync_refuses_a_runs_cut_or_garbled_files_naming_them_and_uploads_nothing(tmp_path):
    config = {**tracked(store(tmp_path / "unused")), "output": {}}  # trained without tracking
    run_dir = train_ok(write_config(tmp_path, config), tmp_path / "runs")
    uri = store(tmp_path)
    epochs = run_dir / "epochs.csv"
    kept = epochs.read_bytes()
    epochs.write_bytes(kept[:100])
    synced = invoke("mlflow-sync", run_dir, "--tracking-uri", uri)
    assert_clean_exit(synced, 1)
    assert f"{run_dir}: not uploaded ({epochs}: shorter than when its run ended" in synced.stdout
    epochs.write_bytes(kept)
    metrics = run_dir / "metrics.csv"
    lines = metrics.read_text().splitlines()
    metrics.write_text("\n".join([*lines[:3], "3,1,not a number,0.01,,0.1", *lines[3:]]) + "\n")
    synced = invoke("mlflow-sync", run_dir, "--tracking-uri", uri)
    assert_clean_exit(synced, 1)
    assert f"{metrics}: its rows are not those the run wrote" in synced.stdout  # (the checkpoint's hash)
    # A run without checkpoints has no hash to check against: its rows are read, and the garbled one named.
    bare = train_ok(
        write_config(tmp_path, {**config, "train": {"epochs": 2, "checkpoint": False}}), tmp_path / "bare"
    )
    lines = (bare / "metrics.csv").read_text().splitlines()
    (bare / "metrics.csv").write_text(
        "\n".join([*lines[:3], "3,1,not a number,0.01,,0.1", *lines[3:]]) + "\n"
    )
    synced = invoke("mlflow-sync", bare, "--tracking-uri", uri)
    assert_clean_exit(synced, 1)
    assert f"{bare / 'metrics.csv'}: row 4 is not a row optcli wrote (ValueError" in synced.stdout
    assert not client(uri).search_runs([e.experiment_id for e in client(uri).search_experiments()])


def test_the_sender_gathers_metrics_that_arrive_together_into_one_batch_in_their_order():
    """A run of short epochs hands over a batch an epoch: the sending process logs those waiting
    together in one log_batch, never reordering them around parameters or the end."""
    import queue

    from optcli.train.sinks.mlflow_sender import gathered

    items: queue.SimpleQueue = queue.SimpleQueue()
    sent = [
        {"kind": "params", "params": {"seed": "0"}},
        {"kind": "metrics", "metrics": [["loss", 1.0, 1, 0]]},
        {"kind": "metrics", "metrics": [["train_loss", 0.9, 1, 0]]},
        {"kind": "metrics", "metrics": [["loss", 0.8, 2, 0]]},
        {"kind": "finish", "status": "FINISHED"},
        None,
    ]
    for item in sent:
        items.put(item)
    assert list(gathered(items)) == [
        sent[0],
        {"kind": "metrics", "metrics": [["loss", 1.0, 1, 0], ["train_loss", 0.9, 1, 0], ["loss", 0.8, 2, 0]]},
        sent[4],
    ]
