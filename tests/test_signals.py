"""Every way a process is asked to stop ends as Ctrl-C does: SIGHUP (a closed terminal or SSH
session) stops a run with a checkpoint, SIGTERM stops a comparison with its reports written, and a
second signal stops at once without a traceback."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest

from tests.conftest import (
    LONG_RUN as LONG,
)
from tests.conftest import (
    REPO,
    assert_clean_exit,
    importing_slowly,
    invoke,
    read_csv,
    read_summary,
    start_optcli,
    wait_for_rows,
    write_config,
)

pytestmark = pytest.mark.slow  # real processes and signals


def test_sighup_stops_a_run_with_a_checkpoint_it_resumes_from(tmp_path):
    config = write_config(tmp_path, LONG)
    process = start_optcli("train", config, "--out", tmp_path / "runs", "--quiet")
    run = wait_for_rows(tmp_path / "runs", 40, process)
    process.send_signal(signal.SIGHUP)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr
    assert "Traceback" not in stderr and "optcli resume" in stderr
    assert read_summary(run)["status"] == "interrupted"
    result = invoke("resume", run, "--set", "train.epochs=10", "--allow-changes", "--quiet")
    assert_clean_exit(result, 0)
    assert [int(row["step"]) for row in read_csv(run / "metrics.csv")] == list(range(1, 101))


def test_a_second_sigterm_stops_at_once_without_a_traceback(tmp_path):
    config = write_config(tmp_path, LONG)
    process = start_optcli("train", config, "--out", tmp_path / "runs", "--quiet")
    wait_for_rows(tmp_path / "runs", 40, process)
    process.send_signal(signal.SIGTERM)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr
    assert "Traceback" not in stderr


def test_sigterm_stops_a_comparison_as_ctrl_c_does(tmp_path):
    compare = REPO / "configs" / "compare_guide.yaml"
    longer = ("--set", "train.epochs=20", "--seeds", "2")  # 10 runs
    process = start_optcli("compare", compare, *longer, "--quiet", "--out", tmp_path)
    deadline = time.monotonic() + 120
    while len(list(tmp_path.glob("compare-*/*/*/summary.json"))) < 2:
        assert time.monotonic() < deadline and process.poll() is None, process.communicate()
        time.sleep(0.05)
    process.send_signal(signal.SIGTERM)  # to the main process alone, as `kill PID` sends it
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr
    assert "Traceback" not in stderr and "optcli compare --resume" in stderr
    directory = next(tmp_path.glob("compare-*/*"))
    assert json.loads((directory / "summary.json").read_text())["status"] == "interrupted"
    assert 2 <= len(read_csv(directory / "results.csv")) < 10
    assert_clean_exit(invoke("compare", "--resume", directory, "--quiet"), 0)
    assert len(read_csv(directory / "results.csv")) == 10


def _wait_for_summaries(out: Path, count: int, process) -> None:
    deadline = time.monotonic() + 120
    while len(list(out.glob("compare-*/*/*/summary.json"))) < count:
        assert time.monotonic() < deadline and process.poll() is None, process.communicate()
        time.sleep(0.05)


def _children(pid: int) -> list[tuple[int, str]]:
    """(pid, command line) of the processes whose parent is `pid` (Linux's /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    found.append((int(entry.name), (entry / "cmdline").read_bytes().decode(errors="replace")))
            except (OSError, IndexError, ValueError):
                continue  # ended meanwhile
    return found


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="finds the resource tracker in /proc (Linux)")
def test_a_comparison_whose_resource_tracker_is_killed_finishes_without_a_traceback(tmp_path):
    compare = REPO / "configs" / "compare_guide.yaml"
    process = start_optcli(
        "compare",
        compare,
        "--jobs",
        "2",
        "--seeds",
        "2",
        "--set",
        "train.epochs=10",
        "--quiet",
        "--out",
        tmp_path,
    )
    _wait_for_summaries(tmp_path, 1, process)
    trackers = [pid for pid, command in _children(process.pid) if "resource_tracker" in command]
    assert trackers, "the pool's fork server starts multiprocessing's resource tracker"
    os.kill(trackers[0], signal.SIGKILL)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 0, stderr
    assert "Traceback" not in stderr and "KeyError" not in stderr


def test_sighup_to_a_comparisons_process_group_stops_it_cleanly(tmp_path):
    """A closed terminal sends SIGHUP to every process of its group: the command, the fork server,
    the resource tracker and the workers alike."""
    compare = REPO / "configs" / "compare_guide.yaml"
    longer = ("--set", "train.epochs=20", "--seeds", "2")  # 10 runs
    process = start_optcli("compare", compare, "--jobs", "2", *longer, "--quiet", "--out", tmp_path)
    _wait_for_summaries(tmp_path, 2, process)
    os.killpg(process.pid, signal.SIGHUP)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr
    assert "Traceback" not in stderr and "KeyError" not in stderr and "optcli compare --resume" in stderr
    directory = next(tmp_path.glob("compare-*/*"))
    assert_clean_exit(invoke("compare", "--resume", directory, "--quiet"), 0)
    assert len(read_csv(directory / "results.csv")) == 10  # 5 arms, 2 seeds


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
def test_a_stop_signal_while_the_command_is_still_importing_ends_it_quietly(tmp_path, signum):
    """Before the command has begun, a signal used to end it by the default action (SIGTERM, SIGHUP:
    no word, exit 143 or 129) or with an import's traceback (Ctrl-C)."""
    environment, begun = importing_slowly(tmp_path, "typer")  # (imported before any command begins)
    process = start_optcli("evaluate", tmp_path / "no-such-run", fresh=True, **environment)
    deadline = time.monotonic() + 60
    while not any(begun.iterdir()):
        assert time.monotonic() < deadline and process.poll() is None, process.communicate()
        time.sleep(0.01)
    process.send_signal(signum)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert stderr.strip() == "interrupted"
