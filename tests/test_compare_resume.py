"""`optcli compare --resume`: a comparison interrupted (Ctrl-C) or killed outright goes on where it
stopped and ends with the files of an uninterrupted comparison."""

from __future__ import annotations

import os
import random
import signal
import time
from pathlib import Path

import pytest

from tests.conftest import (
    REPO,
    assert_clean_exit,
    config_error,
    finish,
    invoke,
    kill_a_run_under_way,
    read_csv,
    rows_without_times,
    start_optcli,
    wait_for_session_to_end,
)

pytestmark = pytest.mark.slow  # real processes, stopped at a random moment

CHOICES = random.Random(20261126)
COMPARE = REPO / "configs" / "compare_guide.yaml"
LONGER = ("--set", "train.epochs=16", "--seeds", "2", "--quiet")  # 10 runs of about a quarter second


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("whole")
    assert_clean_exit(invoke("compare", COMPARE, *LONGER, "--out", out), 0)
    return next(out.glob("compare-*/*"))


def stop_midway(out: Path, signum: int, jobs: str) -> Path:
    process = start_optcli("compare", COMPARE, *LONGER, "--jobs", jobs, "--out", out)
    deadline = time.monotonic() + 120
    target = CHOICES.randint(2, 7)  # finished runs before the signal
    while time.monotonic() < deadline:
        done = list(out.glob("compare-*/*/*/summary.json"))
        if len(done) >= target:
            break
        assert process.poll() is None, process.communicate()
        time.sleep(0.02)
    time.sleep(CHOICES.uniform(0, 0.25))  # and anywhere inside the next run
    if signum == signal.SIGINT:
        os.killpg(process.pid, signal.SIGINT)  # a terminal's Ctrl-C
    else:
        process.send_signal(signal.SIGKILL)  # the main process alone, killed outright
    process.communicate(timeout=120)
    assert process.returncode == (130 if signum == signal.SIGINT else -signal.SIGKILL)
    wait_for_session_to_end(process)  # (a killed parent's workers stop at its death, with a checkpoint)
    return next(out.glob("compare-*/*"))


@pytest.mark.parametrize(
    ("signum", "jobs"), [(signal.SIGINT, "1"), (signal.SIGKILL, "1"), (signal.SIGKILL, "2")]
)
def test_a_stopped_comparison_resumed_equals_the_uninterrupted_one(uninterrupted, tmp_path, signum, jobs):
    directory = stop_midway(tmp_path / "out", signum, jobs)
    statuses = [path.read_text() for path in directory.glob("*/summary.json")]
    assert len(statuses) < 10  # stopped before the end
    if signum == signal.SIGINT:  # the reports written on the way out: an interrupted run has not failed
        interrupted = [
            row["arm"] for row in read_csv(directory / "results.csv") if row["status"] == "interrupted"
        ]
        for row in read_csv(directory / "summary.csv"):
            assert row["failed"] == "0" and int(row["interrupted"]) == interrupted.count(row["arm"])
    result = invoke("compare", "--resume", directory, "--quiet")
    assert_clean_exit(result, 0)
    for name in ("results.csv", "summary.csv"):
        assert rows_without_times(directory / name) == rows_without_times(uninterrupted / name), name
    assert result.stdout.splitlines()[-2] == invoke_verdict(uninterrupted)


def invoke_verdict(directory: Path) -> str:
    import json

    return json.loads((directory / "summary.json").read_text())["verdict"]


def test_resume_takes_no_files_and_needs_a_comparison(tmp_path):
    assert "--resume continues a comparison as it was started" in config_error(
        invoke("compare", COMPARE, "--resume", tmp_path)
    )
    assert "not a comparison optcli can resume" in config_error(invoke("compare", "--resume", tmp_path))


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="finds the worker processes through /proc (Linux)")
def test_a_worker_killed_mid_run_costs_that_run_only_and_resume_reruns_it(uninterrupted, tmp_path):
    out = tmp_path / "out"
    process = start_optcli("compare", COMPARE, *LONGER, "--jobs", "2", "--out", out)
    killed = kill_a_run_under_way(out, process)  # as the out-of-memory killer would
    stderr = finish(process, 120)  # the comparison goes on without it
    assert process.returncode == 0, stderr
    arm, seed = killed.name.rsplit("-seed", 1)
    assert f"{arm} seed {seed} failed: the worker process running it died, killed by SIGKILL" in stderr
    directory = killed.parent
    rows = {(row["arm"], row["seed"]): row["status"] for row in rows_without_times(directory / "results.csv")}
    assert rows.pop((arm, seed)) == "failed" and set(rows.values()) == {"ok"}
    result = invoke("compare", "--resume", directory, "--quiet")
    assert_clean_exit(result, 0)
    for name in ("results.csv", "summary.csv"):
        assert rows_without_times(directory / name) == rows_without_times(uninterrupted / name), name
