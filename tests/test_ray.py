"""`compare --executor ray` on Ray instances on the loopback interface, the one a command starts for
itself (no --address) and one it joins (`--address`, conftest's ray_cluster): the local executor's
results (a comparison cancelled on the one and resumed on the other), a failing task reported as a
failed run, a worker killed mid-run and retried, and the files of a node that cannot see the driver's
folder sent back."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from tests.conftest import (
    RAY_GROUP,
    REPO,
    assert_clean_exit,
    finish,
    invoke,
    kill_a_run_under_way,
    read_csv,
    read_summary,
    rows_without_times,
    start_optcli,
    write_config,
)

pytestmark = [pytest.mark.slow, RAY_GROUP]  # a Ray instance takes seconds to start

COMPARE = REPO / "configs" / "compare_guide.yaml"
SHORT = ("--set", "train.epochs=5", "--seeds", "2", "--quiet")


@pytest.fixture(scope="module")
def local(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("local")
    assert_clean_exit(invoke("compare", COMPARE, *SHORT, "--out", out), 0)
    return next(out.glob("compare-*/*"))


def test_a_task_that_raises_is_a_failed_run_not_a_failed_comparison(ray_cluster, tmp_path):
    (tmp_path / "flaky.py").write_text(
        "import torch\n"
        "class Net(torch.nn.Linear):\n"
        "    def __init__(self, in_features: int, out_features: int):\n"
        "        super().__init__(in_features, out_features)\n"
        "        self.calls = 0\n"
        "    def forward(self, x):\n"
        "        self.calls += 1\n"
        "        if self.calls == 3:\n"
        "            raise RuntimeError('the third batch is cursed')\n"
        "        return super().forward(x)\n"
    )
    base = {
        "device": "cpu",
        "model": {"name": "mlp", "hidden": [8]},
        "data": {"name": "teacher", "samples": 128, "features": 8, "classes": 3, "batch_size": 32},
        "optimizer": {"name": "adam"},
        "train": {"epochs": 2},
    }
    write_config(tmp_path, base, "base.yaml")
    arms = {"plain": {}, "flaky": {"model": {"name": "flaky.py:Net"}}}
    path = write_config(tmp_path, {"base": "base.yaml", "seeds": [0], "runs": arms}, "compare.yaml")
    out = tmp_path / "out"
    result = invoke("compare", path, "--out", out, "--executor", "ray", "--address", ray_cluster, "--quiet")
    assert_clean_exit(result, 0)
    results = {
        row["arm"]: row["status"]
        for row in read_csv(next((tmp_path / "out").glob("compare-*/*/results.csv")))
    }
    assert results == {"plain": "ok", "flaky": "failed"}


def test_a_comparison_on_ray_cancelled_and_resumed_gives_the_local_executors_results(
    local, ray_cluster, tmp_path
):
    """Begun on a Ray instance of its own (no --address) until Ctrl-C cancels its tasks, finished by
    `compare --resume` on another (--address): the local executor's results, to the bit."""
    on_ray = ("--executor", "ray", "--cpus-per-run", "1")
    process = start_optcli("compare", COMPARE, *SHORT, *on_ray, "--out", tmp_path)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and len(list(tmp_path.glob("compare-*/*/*/summary.json"))) < 3:
        assert process.poll() is None, process.communicate()
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGINT)  # Ctrl-C (to the Ray processes too): the tasks are cancelled
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr
    directory = next(tmp_path.glob("compare-*/*"))
    result = invoke(
        "compare", "--resume", directory, "--executor", "ray", "--address", ray_cluster, "--quiet"
    )
    assert_clean_exit(result, 0)
    for name in ("results.csv", "summary.csv"):
        assert rows_without_times(directory / name) == rows_without_times(local / name), name
    # Every run's files are under the driver's folder.
    assert sorted(path.parent.name for path in directory.glob("*/metrics.csv")) == sorted(
        path.parent.name for path in local.glob("*/metrics.csv")
    )


def test_without_ray_the_message_gives_the_install_command(tmp_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "ray", None)  # as if it were not installed
    result = invoke("compare", COMPARE, *SHORT, "--out", tmp_path, "--executor", "ray")
    assert_clean_exit(result, 2)
    assert "pip install 'optcli[ray]'" in result.stderr


def test_a_node_that_cannot_see_the_driver_folder_sends_the_runs_files_back(tmp_path):
    """Ray's transport aside: on a node without the driver's file system a task runs in a scratch
    folder there, and its files travel back with the outcome into the driver's folder."""
    from optcli.compare.planning.plan import CommandLine, load_plan
    from optcli.compare.running.jobs import plan_jobs
    from optcli.compare.running.ray_pool import _packed, _run_remote, _unpack

    plan = load_plan([COMPARE], CommandLine(overrides=["train.epochs=3"], seeds="1"))
    visible, invisible = tmp_path / "shared", tmp_path / "elsewhere"
    visible.mkdir()
    (visible / "comparison.json").write_text("{}")  # how a node tells that it sees the driver's folder

    class Progress:
        def __init__(self) -> None:
            self.records: list = []

        def put(self, item) -> None:
            self.records.append(item)

    travelled = {}
    for directory in (visible, invisible):
        job, progress = plan_jobs(plan, directory)[0], Progress()
        outcome, files = _run_remote(job, _packed(job), progress, 1)
        assert outcome.status == "ok" and progress.records
        travelled[directory] = files
        _unpack(files, job.run_dir)
    assert not travelled[visible] and travelled[invisible]  # written in place, or sent back
    run = plan_jobs(plan, visible)[0].run_dir.name
    for name in ("metrics.csv", "epochs.csv"):
        rows = [read_csv(directory / run / name) for directory in (visible, invisible)]
        assert [{k: v for k, v in row.items() if k != "elapsed_s"} for row in rows[0]] == [
            {k: v for k, v in row.items() if k != "elapsed_s"} for row in rows[1]
        ], name
    assert (invisible / run / "checkpoints" / "last.pt").is_file()


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="finds Ray's worker processes through /proc (Linux)")
def test_a_worker_that_dies_mid_run_is_retried_from_its_checkpoint(ray_cluster, tmp_path):
    longer = ("--set", "train.epochs=40", "--seeds", "1", "--quiet")  # 5 runs of about half a second
    assert_clean_exit(invoke("compare", COMPARE, *longer, "--out", tmp_path / "local"), 0)
    on_ray = ("--executor", "ray", "--address", ray_cluster)
    process = start_optcli("compare", COMPARE, *longer, *on_ray, "--out", tmp_path / "ray")
    killed = kill_a_run_under_way(tmp_path / "ray", process)  # as if its node died: Ray retries the task
    stderr = finish(process, 180)
    assert process.returncode == 0, stderr
    summary = read_summary(killed)
    assert summary["status"] == "completed" and len(summary["resumes"]) == 1  # from its checkpoint
    local, retried = (next((tmp_path / name).glob("compare-*/*")) for name in ("local", "ray"))
    for name in ("results.csv", "summary.csv"):
        assert rows_without_times(retried / name) == rows_without_times(local / name), name
