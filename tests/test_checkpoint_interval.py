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

# One long epoch: 5,000 steps of one sample (seconds: a checkpoint due by time lands inside).
ONE_LONG_EPOCH = {
    "seed": 5,
    "device": "cpu",
    "model": {"name": "mlp", "hidden": [16]},
    "data": {"name": "teacher", "samples": 5000, "features": 6, "classes": 3, "batch_size": 1},
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
    assert stopped_at["epoch"] == 1 and 0 < stopped_at["batches_done"] < 5000  # within the epoch
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


def test_a_best_point_kept_in_memory_is_the_checkpoint_written_at_that_epoch(tmp_path):
    """Priced by time, best.pt waits in memory for the next write of last.pt, while later epochs train
    on: written at the end, it equals the best.pt a run writing every epoch wrote when it improved."""
    # Random labels: the validation loss improves for a few epochs, then the model overfits.
    data = {
        "name": "random",
        "samples": 256,
        "features": 784,
        "classes": 10,
        "batch_size": 64,
        "val_fraction": 0.25,
    }
    optimizer = {"name": "adam", "lr": 3e-3}
    bests = {}
    for name, train in {"kept": {"checkpoint_interval": "2h"}, "written": {"checkpoint_every": 1}}.items():
        config = guide_config(data=data, optimizer=optimizer, train={"epochs": 10, **train})
        run = train_ok(write_config(tmp_path, config, f"{name}.yaml"), tmp_path / name)
        bests[name] = load_checkpoint(run / "checkpoints" / "best.pt")
    kept, written = bests["kept"], bests["written"]
    assert 2 <= kept["loop"]["epoch"] <= 10  # a best epoch before the last: kept across later epochs
    for part in ("model", "optimizer", "random", "data_order", "summary"):
        assert_same_state(kept[part], written[part], part)
    times = {"elapsed_s"}
    assert {key: value for key, value in kept["loop"].items() if key not in times} == {
        key: value for key, value in written["loop"].items() if key not in times
    }


def assert_same_state(one: object, other: object, where: str) -> None:
    """Equal nested dicts, lists and tensors (bit for bit)."""
    if isinstance(one, torch.Tensor):
        assert isinstance(other, torch.Tensor) and torch.equal(one, other), where
    elif isinstance(one, dict):
        assert isinstance(other, dict) and one.keys() == other.keys(), where
        for key in one:
            assert_same_state(one[key], other[key], f"{where}.{key}")
    elif isinstance(one, list | tuple):
        assert isinstance(other, list | tuple) and len(one) == len(other), where
        for index, (item, other_item) in enumerate(zip(one, other, strict=True)):
            assert_same_state(item, other_item, f"{where}[{index}]")
    else:
        assert one == other, where
