"""Checkpoints and resume: a run killed or interrupted at any moment and resumed equals the same run
uninterrupted, row for row and weight for weight."""

from __future__ import annotations

import itertools
import random
import signal
import time
from pathlib import Path

import pytest
import torch
import yaml

from optcli.train.checkpoints import load_checkpoint
from tests.conftest import (
    Command,
    assert_clean_exit,
    config_error,
    invoke,
    one_infinite_batch,
    read_csv,
    read_summary,
    run_dirs,
    start_optcli,
    train_ok,
    write_config,
)

# Where the kill and interrupt tests stop a run: drawn at random, but seeded, so that a failure repeats.
CHOICES = random.Random(20261126)

# Dropout, shuffling, a validation split and a plateau schedule: every kind of state a resume must restore.
CONFIG = {
    "seed": 3,
    "device": "cpu",
    "model": {"name": "mlp", "hidden": [32], "dropout": 0.2},
    "data": {
        "name": "teacher",
        "samples": 320,
        "features": 8,
        "classes": 3,
        "batch_size": 32,
        "val_fraction": 0.2,
    },
    "optimizer": {"name": "adam", "lr": 0.003},
    "scheduler": {"name": "plateau", "patience": 2, "factor": 0.5},
    "clip": {"max_norm": 1.0},
    "train": {"epochs": 150, "checkpoint_every": 1},
}
COMPARED = {
    "metrics.csv": ("step", "epoch", "loss", "lr", "grad_norm"),
    "epochs.csv": ("epoch", "step", "train_loss", "lr", "val_loss", "val_accuracy"),
}


def rows(run_dir: Path, name: str) -> list[tuple[str, ...]]:
    return [tuple(row[key] for key in COMPARED[name]) for row in read_csv(run_dir / name)]


def assert_same_run(resumed: Path, reference: Path) -> None:
    for name in COMPARED:
        assert rows(resumed, name) == rows(reference, name), name
    final = load_checkpoint(resumed / "checkpoints" / "last.pt")["model"]
    expected = load_checkpoint(reference / "checkpoints" / "last.pt")["model"]
    assert all(torch.equal(final[key], expected[key]) for key in expected)
    summary, reference_summary = read_summary(resumed), read_summary(reference)
    assert summary["status"] == "completed"
    for key in ("final_loss", "best_loss", "best_val_loss", "final_val_accuracy", "steps", "epochs"):
        assert summary[key] == reference_summary[key], key


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> tuple[Path, Path]:
    directory = tmp_path_factory.mktemp("reference")
    config = write_config(directory, CONFIG)
    return config, train_ok(config, directory / "runs")


def start_training(config: Path, out: Path) -> Command:
    return start_optcli("train", config, "--out", out, "--quiet")


def wait_for_first_checkpoint(out: Path, process: Command) -> Path:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        found = list(out.glob("*/*/checkpoints/last.pt"))
        if found:
            return found[0].parent.parent
        assert process.poll() is None, process.communicate()
        time.sleep(0.02)
    raise AssertionError("no checkpoint within a minute")


def wait_for_step(run_dir: Path, step: int) -> None:
    """Until metrics.csv holds `step` rows (they reach the disk at each epoch's end)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with (run_dir / "metrics.csv").open() as stream:
            if sum(1 for _ in stream) - 1 >= step:
                return
        time.sleep(0.005)
    raise AssertionError(f"step {step} not reached within a minute")


@pytest.mark.slow
def test_killed_at_a_random_moment_and_resumed_equals_the_uninterrupted_run(reference, tmp_path):
    config, reference_dir = reference
    process = start_training(config, tmp_path / "runs")
    run_dir = wait_for_first_checkpoint(tmp_path / "runs", process)
    # A random point of the run, well before its end (1,200 steps), so the kill always lands mid-run.
    target = CHOICES.randint(8, 800)
    wait_for_step(run_dir, target)
    time.sleep(CHOICES.uniform(0.0, 0.05))  # and at any moment within an epoch
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL, (
        f"the run ended by itself before the kill after step {target}"
    )
    # What a kill in the middle of a checkpoint's write leaves (here for sure): its temporary file.
    (run_dir / "checkpoints" / ".last.pt.k1ll3d.tmp").write_bytes(b"half a checkpoint")
    result = invoke("resume", run_dir, "--quiet")
    assert_clean_exit(result, 0)
    assert_same_run(run_dir, reference_dir)
    assert len(read_summary(run_dir)["resumes"]) == 1
    assert not list((run_dir / "checkpoints").glob(".*"))  # cleared by the resumed run


@pytest.mark.slow
def test_interrupted_then_resumed_equals_the_uninterrupted_run(reference, tmp_path):
    config, reference_dir = reference
    process = start_training(config, tmp_path / "runs")
    run_dir = wait_for_first_checkpoint(tmp_path / "runs", process)
    wait_for_step(run_dir, CHOICES.randint(8, 800))
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert "Traceback" not in stderr and f"optcli resume {run_dir} continues the run" in stderr
    summary = read_summary(run_dir)
    assert summary["status"] == "interrupted"
    checkpoint = load_checkpoint(run_dir / "checkpoints" / "last.pt")
    assert checkpoint["loop"]["step"] == summary["steps"]  # the checkpoint is of the very last step
    result = invoke("resume", run_dir, "--quiet")
    assert_clean_exit(result, 0)
    assert_same_run(run_dir, reference_dir)


@pytest.mark.slow
def test_sigterm_checkpoints_and_stops_like_ctrl_c(reference, tmp_path):
    config, _ = reference
    process = start_training(config, tmp_path / "runs")
    run_dir = wait_for_first_checkpoint(tmp_path / "runs", process)
    process.send_signal(signal.SIGTERM)
    process.communicate(timeout=60)
    assert process.returncode == 130
    assert read_summary(run_dir)["status"] == "interrupted"


def test_a_changed_config_is_refused_unless_allowed(reference, tmp_path):
    config, _ = reference
    run_dir = train_ok(config, tmp_path / "runs", "--max-steps", "20")
    (run_dir / "summary.json").write_text('{"status": "interrupted"}')  # as if it had been stopped
    message = config_error(invoke("resume", run_dir, "--set", "optimizer.lr=0.001"))
    assert "optimizer.lr: 0.003 -> 0.001" in message and "--allow-changes" in message
    result = invoke(
        "resume",
        run_dir,
        "--set",
        "optimizer.lr=0.001",
        "--set",
        "train.max_steps=30",
        "--allow-changes",
        "-q",
    )
    assert_clean_exit(result, 0)
    summary = read_summary(run_dir)
    assert summary["steps"] == 30 and "optimizer.lr: 0.003 -> 0.001" in summary["resumes"][0]["changes"]
    rates = [float(row["lr"]) for row in read_csv(run_dir / "metrics.csv")]
    assert rates[:20] == [0.003] * 20 and set(rates[20:]) == {0.001}
    assert [int(row["step"]) for row in read_csv(run_dir / "metrics.csv")] == list(range(1, 31))


def test_resume_errors(reference, tmp_path):
    config, reference_dir = reference
    assert "has completed" in config_error(invoke("resume", reference_dir))
    assert "no such run directory" in config_error(invoke("resume", tmp_path / "nope"))
    run_dir = train_ok(config, tmp_path / "runs", "--max-steps", "10")
    (run_dir / "summary.json").unlink()
    for name in ("last.pt", "best.pt"):  # (a damaged last.pt alone falls back to best.pt)
        (run_dir / "checkpoints" / name).write_bytes(b"not a checkpoint")
    message = config_error(invoke("resume", run_dir))
    assert (
        "last.pt: the checkpoint is damaged: not a whole archive" in message
        and "cannot be resumed" in message
    )
    (run_dir / "checkpoints" / "last.pt").unlink()
    assert "no checkpoint" in config_error(invoke("resume", run_dir))


def test_a_checkpoint_of_another_model(reference, tmp_path):
    config, _ = reference
    run_dir = train_ok(config, tmp_path / "runs", "--max-steps", "10")
    (run_dir / "summary.json").unlink()
    message = config_error(invoke("resume", run_dir, "--set", "model.hidden=[64]", "--allow-changes"))
    assert "the checkpoint holds another model" in message


def test_checkpoints_hold_what_resume_needs(reference):
    _, reference_dir = reference
    checkpoint = load_checkpoint(reference_dir / "checkpoints" / "last.pt")
    for key in (
        "model",
        "optimizer",
        "scheduler",
        "random",
        "data_order",
        "loop",
        "config",
        "csv_sizes",
        "summary",
    ):
        assert key in checkpoint
    assert set(checkpoint["random"]) >= {"python", "numpy", "torch", "data_order"}
    # best.pt holds the state at the end of the best epoch by validation loss, not the last one's.
    summary = read_summary(reference_dir)
    assert summary["best_val_loss_epoch"] < summary["epochs"]
    best = load_checkpoint(reference_dir / "checkpoints" / "best.pt")
    assert best["loop"]["epoch"] - 1 == summary["best_val_loss_epoch"]
    assert best["summary"]["validation"]["best_val_loss"] == summary["best_val_loss"]
    assert not list((reference_dir / "checkpoints").glob(".*"))  # written atomically, nothing left over


@pytest.mark.parametrize("large", [False, True])
def test_checkpoints_are_written_aside_unless_large_and_hold_the_same(
    reference, tmp_path, monkeypatch, large
):
    from optcli.train import checkpoint_writer

    config, reference_dir = reference
    threads = []
    real_executor = checkpoint_writer.ThreadPoolExecutor

    def executor(*args, **kwargs):
        threads.append(1)
        return real_executor(*args, **kwargs)

    monkeypatch.setattr(checkpoint_writer, "ThreadPoolExecutor", executor)
    if large:  # over the limit: written straight to the file, from the loop's thread
        monkeypatch.setattr(checkpoint_writer, "ASYNC_LIMIT", 0)
    run_dir = train_ok(config, tmp_path / "runs")
    assert len(threads) == (0 if large else 1)
    assert_same_run(run_dir, reference_dir)
    for name in ("last.pt", "best.pt"):
        written, expected = (load_checkpoint(d / "checkpoints" / name) for d in (run_dir, reference_dir))
        timeless = [{**checkpoint["loop"], "elapsed_s": None} for checkpoint in (written, expected)]
        assert timeless[0] == timeless[1], name
        assert all(torch.equal(written["model"][key], expected["model"][key]) for key in expected["model"])


def test_nonfinite_stop_names_the_step_and_the_last_checkpoint(tmp_path):
    config = {**CONFIG, "optimizer": {"name": "sgd", "lr": 1e5}, "clip": None, "scheduler": None}
    result = invoke("train", write_config(tmp_path, config), "--out", tmp_path / "runs", "-q")
    assert_clean_exit(result, 1)
    assert "at step" in result.stderr
    summary = read_summary(run_dirs(tmp_path / "runs")[0])
    assert summary["status"] == "failed"


def test_nonfinite_skip_leaves_the_update_out_and_counts_it(tmp_path):
    # A loss that is infinite for one batch only: its step is skipped, the others train as usual.
    skip = write_config(tmp_path, one_infinite_batch(tmp_path, on_nonfinite="skip"))
    result = invoke("train", skip, "--out", tmp_path / "skip", "-q")
    assert_clean_exit(result, 0)
    assert (
        "warning: step 2 (epoch 1): the loss was" in result.stderr and "update was skipped" in result.stderr
    )
    run_dir = run_dirs(tmp_path / "skip")[0]
    summary = read_summary(run_dir)
    assert summary["skipped_steps"] == 2 and summary["status"] == "completed"
    losses = [row["loss"] for row in read_csv(run_dir / "metrics.csv")]
    assert losses[1] in ("nan", "inf") and losses[5] in ("nan", "inf")
    assert all(loss not in ("nan", "inf") for index, loss in enumerate(losses) if index not in (1, 5))
    stop = write_config(tmp_path, one_infinite_batch(tmp_path, on_nonfinite="skip", max_skips=1), "s.yaml")
    result = invoke("train", stop, "--out", tmp_path / "stop", "-q")
    assert_clean_exit(result, 1)
    assert "max_skips" in result.stderr


@pytest.mark.slow
def test_a_second_ctrl_c_stops_at_once_and_leaves_a_readable_checkpoint(reference, tmp_path):
    config, _ = reference
    process = start_training(config, tmp_path / "runs")
    run_dir = wait_for_first_checkpoint(tmp_path / "runs", process)
    wait_for_step(run_dir, CHOICES.randint(8, 400))
    process.send_signal(signal.SIGINT)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130 and "Traceback" not in stderr
    load_checkpoint(run_dir / "checkpoints" / "last.pt")  # whichever moment it hit, never half a file
    assert not list((run_dir / "checkpoints").glob("*.tmp"))


def _cosine_run(tmp_path: Path, **scheduler: object) -> Path:
    config = {
        "seed": 0,
        "device": "cpu",
        "model": {"name": "mlp", "hidden": [8]},
        "data": {"name": "teacher", "samples": 64, "features": 4, "classes": 2, "batch_size": 32},
        "optimizer": {"name": "sgd", "lr": 0.1},
        "scheduler": {"name": "cosine", **scheduler},
        "train": {"epochs": 4},
    }
    return train_ok(write_config(tmp_path, config), tmp_path / "runs")


def test_a_completed_run_extended_refills_the_run_length_optcli_filled_in(tmp_path):
    run_dir = _cosine_run(tmp_path)
    assert load_checkpoint(run_dir / "checkpoints" / "last.pt")["filled"] == ["T_max"]
    refused = config_error(invoke("resume", run_dir))
    assert "has completed" in refused and "--set train.epochs=N --allow-changes" in refused
    result = invoke("resume", run_dir, "--set", "train.epochs=8", "--allow-changes", "--quiet")
    assert_clean_exit(result, 0)
    recorded = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert recorded["scheduler"]["T_max"] == 8 and recorded["train"]["epochs"] == 8
    rates = [float(row["lr"]) for row in read_csv(run_dir / "epochs.csv")]
    assert len(rates) == 8
    # Today T_max stayed 4 and the rate climbed back up after epoch 4: never again.
    assert all(later <= earlier + 1e-12 for earlier, later in itertools.pairwise(rates)), rates
    summary = read_summary(run_dir)
    assert summary["status"] == "completed" and summary["resumes"][0]["changes"]


def test_the_live_scheduler_takes_the_new_length_not_the_checkpoints(tmp_path):
    run_dir = _cosine_run(tmp_path)  # its scheduler state says T_max 4; the config now says 16
    result = invoke("resume", run_dir, "--set", "train.epochs=16", "--allow-changes", "--quiet")
    assert_clean_exit(result, 0)
    checkpoint = load_checkpoint(run_dir / "checkpoints" / "last.pt")
    assert checkpoint["scheduler"]["T_max"] == 16  # the live scheduler took the new length
    assert checkpoint["config"]["scheduler"]["T_max"] == 16


def test_an_explicit_run_length_is_the_users_and_one_cycle_cannot_be_stretched(tmp_path):
    run_dir = _cosine_run(tmp_path, T_max=4)  # written by the user: not refilled
    assert load_checkpoint(run_dir / "checkpoints" / "last.pt")["filled"] == []
    result = invoke("resume", run_dir, "--set", "train.epochs=6", "--allow-changes", "--quiet")
    assert_clean_exit(result, 0)
    assert yaml.safe_load((run_dir / "config.yaml").read_text())["scheduler"]["T_max"] == 4
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    config["scheduler"] = {"name": "one_cycle", "max_lr": 0.1}
    config["train"]["epochs"] = 2
    one_cycle = train_ok(write_config(tmp_path, config, "one.yaml"), tmp_path / "one")
    message = config_error(invoke("resume", one_cycle, "--set", "train.epochs=4", "--allow-changes"))
    assert "OneCycleLR plans its whole cycle when it starts" in message
