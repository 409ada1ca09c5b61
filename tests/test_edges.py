"""The edges of the commands that use a trained run: a stop signal ends them as Ctrl-C does (exit 130,
nothing half-written left behind), and what a killed one leaves is removed by the next."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest

from tests.conftest import REPO, finish, start_optcli, train_ok

pytestmark = pytest.mark.slow  # real processes and real signals


@pytest.fixture(scope="module")
def fruit_run(tmp_path_factory) -> tuple[Path, Path]:
    """A fruit run, and 400,000 rows to predict (a few seconds of work)."""
    directory = tmp_path_factory.mktemp("fruit")
    run = train_ok(REPO / "configs" / "fruit_csv.yaml", directory / "runs", "--set", "train.epochs=1")
    rows = (REPO / "configs" / "data" / "fruit.csv").read_text().splitlines()
    big = directory / "many.csv"
    big.write_text("\n".join([rows[0], *(rows[1:] * 1700)]) + "\n")
    return run, big


def wait_for(pattern: str, directory: Path, process, seconds: float = 60) -> Path:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        found = list(directory.glob(pattern))
        if found:
            return found[0]
        assert process.poll() is None, process.communicate()
        time.sleep(0.005)
    raise AssertionError(f"no {pattern} within {seconds:.0f} s")


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP])
def test_predict_stopped_by_a_signal_exits_130_and_leaves_nothing_half_written(fruit_run, tmp_path, signum):
    run, big = fruit_run
    out = tmp_path / "predictions.csv"
    process = start_optcli("predict", run, big, "--out", out)
    wait_for(".predictions.csv.*.tmp", tmp_path, process)  # writing has begun
    process.send_signal(signum)
    stderr = finish(process, 60)
    assert process.returncode == 130, stderr
    assert "interrupted" in stderr and "Traceback" not in stderr
    assert list(tmp_path.iterdir()) == []  # neither the output nor its temporary file


def test_what_a_killed_predict_left_is_removed_by_the_next(fruit_run, tmp_path):
    run, big = fruit_run
    out = tmp_path / "predictions.csv"
    process = start_optcli("predict", run, big, "--out", out)
    orphan = wait_for(".predictions.csv.*.tmp", tmp_path, process)
    process.send_signal(signal.SIGKILL)
    finish(process, 30)
    assert orphan.exists()  # a kill -9 runs no cleanup
    small = REPO / "configs" / "data" / "fruit.csv"
    process = start_optcli("predict", run, small, "--out", out)
    assert process.wait(timeout=120) == 0, process.communicate()
    assert sorted(path.name for path in tmp_path.iterdir()) == ["predictions.csv"]
