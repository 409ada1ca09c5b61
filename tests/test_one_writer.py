"""One writer per run directory and per comparison: a second `resume` or `compare --resume` of the
same folder, while the first is still writing, is refused (exit 2, naming the process), and the first
ends with every step once."""

from __future__ import annotations

import os
import signal
import time

import pytest

from tests.conftest import (
    LONG_RUN as LONG,
)
from tests.conftest import (
    REPO,
    assert_clean_exit,
    config_error,
    invoke,
    read_csv,
    read_summary,
    start_optcli,
    train_ok,
    wait_for_rows,
    write_config,
)

pytestmark = pytest.mark.slow  # real processes


def test_a_second_resume_of_a_run_being_written_is_refused(tmp_path):
    config = write_config(tmp_path, LONG)
    run = train_ok(config, tmp_path / "runs", "--max-steps", "20")
    longer = ("--set", "train.max_steps=3000", "--allow-changes")
    first = start_optcli("resume", run, *longer, "--quiet")
    try:
        wait_for_rows(tmp_path / "runs", 60, first)  # it is training, past where it resumed
        message = config_error(invoke("resume", run, *longer))
        assert f"another optcli process (pid {first.pid}) is writing this run" in message
        _, stderr = first.communicate(timeout=300)
    finally:
        if first.poll() is None:
            first.kill()
    assert first.returncode == 0, stderr
    steps = [int(row["step"]) for row in read_csv(run / "metrics.csv")]
    assert steps == list(range(1, 3001))  # every step once: nothing duplicated by a second writer
    assert read_summary(run)["status"] == "completed"


def test_a_lock_left_by_a_killed_process_never_blocks(tmp_path):
    config = write_config(tmp_path, LONG)
    process = start_optcli("train", config, "--out", tmp_path / "runs", "--quiet")
    run = wait_for_rows(tmp_path / "runs", 100, process)
    process.send_signal(signal.SIGKILL)
    process.communicate(timeout=60)
    assert (run / ".optcli.lock").is_file()  # left behind, and held by nobody
    result = invoke("resume", run, "--set", "train.max_steps=400", "--allow-changes", "--quiet")
    assert_clean_exit(result, 0)


def test_a_second_compare_resume_of_a_comparison_being_written_is_refused(tmp_path):
    compare = REPO / "configs" / "compare_guide.yaml"
    first = start_optcli(
        "compare", compare, "--set", "train.epochs=60", "--seeds", "1", "--quiet", "--out", tmp_path
    )
    try:
        deadline = time.monotonic() + 120
        while not list(tmp_path.glob("compare-*/*/*/metrics.csv")):
            assert time.monotonic() < deadline and first.poll() is None, first.communicate()
            time.sleep(0.05)
        directory = next(tmp_path.glob("compare-*/*"))
        message = config_error(invoke("compare", "--resume", directory))
        assert f"another optcli process (pid {first.pid}) is writing this comparison" in message
    finally:
        if first.poll() is None:
            os.killpg(first.pid, signal.SIGINT)
        first.communicate(timeout=120)
    assert first.returncode == 130
    assert_clean_exit(invoke("compare", "--resume", directory, "--quiet"), 0)  # its lock died with it
    assert len(read_csv(directory / "results.csv")) == 5  # 5 arms, 1 seed
