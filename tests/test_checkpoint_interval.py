"""Checkpoints priced by time, not by epochs: `train.checkpoint_interval` writes last.pt when one is
due, at an epoch's end or within one, and a run killed at any moment resumes exactly from it."""

from __future__ import annotations

import signal
import time

import pytest
import torch

from optcli.train.checkpoints import load_checkpoint
from tests.conftest import (
    assert_clean_exit,
    config_error,
    guide_config,
    invoke,
    read_csv,
    start_optcli,
    train_ok,
    wait_for_rows,
    write_config,
)

# One long epoch: 12,000 steps of one sample (several seconds: a checkpoint due by time lands inside).
ONE_LONG_EPOCH = {
    "seed": 5,
    "device": "cpu",
    "model": {"name": "mlp", "hidden": [16]},
    "data": {"name": "teacher", "samples": 12000, "features": 6, "classes": 3, "batch_size": 1},
    "optimizer": {"name": "adam", "lr": 0.003},
    "train": {"epochs": 1, "checkpoint_interval": 0.3, "log_every": 1},
}


@pytest.mark.slow
def test_a_checkpoint_due_by_time_lands_within_an_epoch_and_resumes_exactly(tmp_path):
    config = write_config(tmp_path, ONE_LONG_EPOCH)
    whole = train_ok(config, tmp_path / "whole")
    process = start_optcli("train", config, "--out", tmp_path / "runs", "--quiet")
    try:
        run = wait_for_rows(tmp_path / "runs", 10, process)
        last = run / "checkpoints" / "last.pt"
        deadline = time.monotonic() + 60
        while not last.exists():  # the first is due 0.3 s in, long before the epoch ends
            assert time.monotonic() < deadline and process.poll() is None
            time.sleep(0.02)
        time.sleep(0.2)
        process.send_signal(signal.SIGKILL)  # at a moment of no checkpoint's choosing
        process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    stopped_at = load_checkpoint(last)["loop"]
    assert stopped_at["epoch"] == 1 and 0 < stopped_at["batches_done"] < 12000  # within the epoch
    assert_clean_exit(invoke("resume", run, "--quiet"), 0)
    assert [row["loss"] for row in read_csv(run / "metrics.csv")] == [
        row["loss"] for row in read_csv(whole / "metrics.csv")
    ]
    expected, got = (load_checkpoint(path / "checkpoints" / "last.pt")["model"] for path in (whole, run))
    assert all(torch.equal(expected[key], got[key]) for key in expected)


def test_with_a_long_interval_last_pt_is_written_at_the_end_only(tmp_path):
    config = guide_config(train={"epochs": 6, "checkpoint_interval": "2h"})
    run = train_ok(write_config(tmp_path, config), tmp_path / "runs")
    assert load_checkpoint(run / "checkpoints" / "last.pt")["loop"]["epoch"] == 7  # after the last epoch


def test_the_default_writes_the_final_weights_and_checkpoint_every_still_counts_epochs(tmp_path):
    run = train_ok(write_config(tmp_path, guide_config(train={"epochs": 5})), tmp_path / "auto")
    assert load_checkpoint(run / "checkpoints" / "last.pt")["loop"]["epoch"] == 6
    counted = guide_config(train={"epochs": 5, "checkpoint_every": 2})
    run = train_ok(write_config(tmp_path, counted, "counted.yaml"), tmp_path / "counted")
    assert load_checkpoint(run / "checkpoints" / "last.pt")["loop"]["epoch"] == 5  # after epoch 4


@pytest.mark.parametrize(
    ("train", "expected"),
    [
        ({"checkpoint_interval": "fast"}, 'train.checkpoint_interval: give "auto", a number of seconds'),
        ({"checkpoint_interval": 0}, "train.checkpoint_interval: give"),
        (
            {"checkpoint_interval": "10m", "checkpoint_every": 2},
            "give checkpoint_every (epochs) or checkpoint_interval",
        ),
    ],
)
def test_checkpoint_interval_mistakes(tmp_path, train, expected):
    message = config_error(invoke("check", write_config(tmp_path, guide_config(train=train))))
    assert expected in message, message
