"""A resume refuses what it cannot trust: a damaged checkpoint (it falls back to best.pt where that is
exact), CSV files shorter than the checkpoint says or gone, links that would take writes outside the
run; and a run whose directory is deleted under it stops instead of reporting success."""

from __future__ import annotations

import shutil
import signal
from pathlib import Path

import pytest
import torch

from optcli.integrity import damage_in
from optcli.train.checkpoints import load_checkpoint
from tests.conftest import (
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

# 10 steps an epoch, no validation: best.pt follows the training loss, which falls every epoch here.
CONFIG = {
    "seed": 2,
    "device": "cpu",
    "model": {"name": "mlp", "hidden": [16]},
    "data": {"name": "teacher", "samples": 160, "features": 6, "classes": 3, "batch_size": 16},
    "optimizer": {"name": "adam", "lr": 0.01},
    "train": {"epochs": 4},
}


def zero_bytes_inside(path: Path) -> None:
    """64 zero bytes in the middle of the file: what a bad sector or a broken copy does."""
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 64] = bytes(64)
    path.write_bytes(bytes(data))


@pytest.fixture
def stopped(tmp_path) -> tuple[Path, Path]:
    """An uninterrupted run, and the same run stopped at step 25 (mid-epoch: last.pt there, and best.pt
    too, in a file of its own: the partial epoch's training loss, the mean of its 5 steps, is the lowest)."""
    config = write_config(tmp_path, CONFIG)
    whole = train_ok(config, tmp_path / "whole")
    run = train_ok(config, tmp_path / "runs", "--max-steps", "25")
    (run / "summary.json").unlink()  # as if killed there
    return whole, run


def resume(run: Path, *extra: str):
    return invoke("resume", run, "--set", "train.max_steps=null", "--allow-changes", "--quiet", *extra)


def test_a_damaged_last_checkpoint_falls_back_to_best_and_ends_as_the_uninterrupted_run(stopped):
    whole, run = stopped
    last, best = run / "checkpoints" / "last.pt", run / "checkpoints" / "best.pt"
    assert load_checkpoint(best)["loop"]["step"] == 25 and not best.samefile(last)
    zero_bytes_inside(last)
    assert damage_in(last) is not None
    result = resume(run)
    assert_clean_exit(result, 0)
    assert (
        "last.pt: the checkpoint is damaged" in result.stderr
        and "resuming from checkpoints/best.pt" in result.stderr
    )
    assert read_csv(run / "metrics.csv") and [r["loss"] for r in read_csv(run / "metrics.csv")] == [
        r["loss"] for r in read_csv(whole / "metrics.csv")
    ]
    expected = load_checkpoint(whole / "checkpoints" / "last.pt")["model"]
    got = load_checkpoint(run / "checkpoints" / "last.pt")["model"]
    assert all(torch.equal(expected[key], got[key]) for key in expected)
    assert "best.pt" in read_summary(run)["resumes"][0]["note"]


def test_with_every_checkpoint_damaged_the_resume_is_refused_naming_the_file(stopped):
    _, run = stopped
    for name in ("last.pt", "best.pt"):
        zero_bytes_inside(run / "checkpoints" / name)
    before = (run / "metrics.csv").read_bytes()
    message = config_error(resume(run))
    assert "last.pt: the checkpoint is damaged" in message and "cannot be resumed" in message
    assert (run / "metrics.csv").read_bytes() == before  # nothing touched


def test_a_shortened_or_missing_csv_is_refused_and_never_padded(stopped):
    _, run = stopped
    metrics = run / "metrics.csv"
    original = metrics.read_bytes()
    metrics.write_bytes(original[: len(original) // 3])
    message = config_error(resume(run))
    assert "metrics.csv: holds" in message and "fewer than the" in message
    assert b"\0" not in metrics.read_bytes()
    metrics.unlink()
    assert "metrics.csv: missing" in config_error(resume(run))
    assert not metrics.exists()


@pytest.mark.parametrize("name", ["metrics.csv", "epochs.csv"])
def test_a_csv_whose_rows_were_changed_in_place_is_refused_and_left_as_it_is(stopped, name):
    """The same size, one digit different: a hand edit, or a disk's rot. The checkpoint holds the
    SHA-256 of the bytes the run wrote, so the resume does not carry the changed rows into the run."""
    whole, run = stopped
    path = run / name
    data = bytearray(path.read_bytes())
    position = data.index(b"\n") + 1  # the first row's first character: a digit
    data[position] = ord("9") if data[position] != ord("9") else ord("8")
    path.write_bytes(bytes(data))
    message = config_error(resume(run))
    assert f"{path}: its rows are not those the run wrote (the file was edited or damaged since)" in message
    assert path.read_bytes() == bytes(data)  # not cut back, not appended to
    data[position] = (whole / name).read_bytes()[position]  # (the same run's bytes: put back as written)
    path.write_bytes(bytes(data))
    assert_clean_exit(resume(run), 0)
    assert [row["loss"] for row in read_csv(run / "metrics.csv")] == [
        row["loss"] for row in read_csv(whole / "metrics.csv")
    ]


def test_a_csv_replaced_by_a_link_is_never_written_through(stopped, tmp_path):
    _, run = stopped
    outside = tmp_path / "precious.csv"
    outside.write_text("somebody else's data\n" * 100)
    (run / "epochs.csv").unlink()
    (run / "epochs.csv").symlink_to(outside)
    message = config_error(resume(run))
    assert "epochs.csv: a symbolic link; optcli never writes through one" in message
    assert outside.read_text() == "somebody else's data\n" * 100


@pytest.mark.slow
def test_a_run_whose_directory_is_deleted_stops_with_an_error(tmp_path):
    config = write_config(tmp_path, {**CONFIG, "train": {"epochs": 400}})
    process = start_optcli("train", config, "--out", tmp_path / "runs", "--quiet")
    try:
        run = wait_for_rows(tmp_path / "runs", 50, process)
        run.rename(tmp_path / "trash")  # (rm -rf, without racing the run's own writes)
        shutil.rmtree(tmp_path / "trash", ignore_errors=True)
        _, stderr = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
    assert process.returncode == 1, stderr
    assert "was deleted or replaced while the run was going" in stderr
    assert "Traceback" not in stderr
    assert not run.exists()  # not recreated behind the user's back


def test_a_run_whose_metrics_csv_is_deleted_stops_with_an_error(tmp_path):
    """Otherwise it writes on into the deleted file and ends 'completed' with no metrics.csv."""
    config = write_config(tmp_path, {**CONFIG, "train": {"epochs": 400}})
    process = start_optcli("train", config, "--out", tmp_path / "runs", "--quiet")
    try:
        run = wait_for_rows(tmp_path / "runs", 50, process)
        (run / "metrics.csv").unlink()
        _, stderr = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
    assert process.returncode == 1, stderr
    assert (
        "metrics.csv was deleted or replaced while the run was going" in stderr and "Traceback" not in stderr
    )
    assert '"status": "completed"' not in (run / "summary.json").read_text()


@pytest.mark.parametrize("offset", [-30, -60, -200], ids=["end-record", "zip64-record", "central-directory"])
def test_damage_in_the_archives_directory_falls_back_to_best_like_any_damage(stopped, offset):
    """Bytes that every entry's CRC misses (the zip's end records and central directory, which Python's
    zipfile reads past and torch's reader does not) are damage too, not an 'internal miniz error'."""
    whole, run = stopped
    last = run / "checkpoints" / "last.pt"
    data = bytearray(last.read_bytes())
    data[offset] ^= 0xFF
    last.write_bytes(bytes(data))
    result = resume(run)
    assert_clean_exit(result, 0)
    assert "last.pt: the checkpoint is damaged: not readable" in result.stderr
    assert "resuming from checkpoints/best.pt" in result.stderr
    assert [r["loss"] for r in read_csv(run / "metrics.csv")] == [
        r["loss"] for r in read_csv(whole / "metrics.csv")
    ]


def test_best_is_a_file_of_its_own_so_damage_to_last_leaves_it_whole(tmp_path):
    """Every epoch improves here, so the last checkpoint is also the best: two files, not one linked."""
    run = train_ok(write_config(tmp_path, CONFIG), tmp_path / "runs")
    last, best = run / "checkpoints" / "last.pt", run / "checkpoints" / "best.pt"
    assert load_checkpoint(best)["loop"] == load_checkpoint(last)["loop"]
    assert best.stat().st_nlink == 1 and last.stat().st_nlink == 1
    assert not best.samefile(last)
    zero_bytes_inside(last)
    assert damage_in(best) is None
    assert_clean_exit(invoke("export", run, "--format", "torchscript"), 0)  # its default checkpoint, best


def test_a_damaged_best_checkpoint_is_refused_by_resume_naming_it(stopped):
    """Resumed over a damaged best.pt, a run would end 'completed' with its best weights lost."""
    _, run = stopped
    zero_bytes_inside(run / "checkpoints" / "best.pt")
    before = (run / "metrics.csv").read_bytes()
    message = config_error(resume(run))
    assert "best.pt: the checkpoint is damaged" in message and "the best weights it held are lost" in message
    assert (run / "metrics.csv").read_bytes() == before
    (run / "checkpoints" / "best.pt").unlink()  # the way out the message gives
    assert_clean_exit(resume(run), 0)
    assert read_summary(run)["status"] == "completed" and (run / "checkpoints" / "best.pt").is_file()


def test_another_thread_count_on_resume_is_a_change_that_must_be_allowed(stopped):
    """The checkpoint records the threads the run trained with; another count may change the steps."""
    _, run = stopped
    trained_with = load_checkpoint(run / "checkpoints" / "last.pt")["threads"]
    other = trained_with + 1
    message = config_error(invoke("resume", run, "--quiet", "--set", f"train.threads={other}"))
    assert (
        f"threads: {trained_with} -> {other}" in message and f"--set train.threads={trained_with}" in message
    )
    assert_clean_exit(resume(run, "--set", f"train.threads={other}"), 0)
    changes = read_summary(run)["resumes"][0]["changes"]
    assert any(change.startswith(f"threads: {trained_with} -> {other}") for change in changes)


def test_a_resume_in_a_process_with_another_thread_count_keeps_the_recorded_one(stopped):
    """With train.threads unset the resume adopts the count the run trained with, so a resume from a
    differently configured process stays exact and is no change to allow."""
    whole, run = stopped
    trained_with = load_checkpoint(run / "checkpoints" / "last.pt")["threads"]
    before = torch.get_num_threads()
    torch.set_num_threads(trained_with + 1)
    try:
        assert_clean_exit(resume(run), 0)
        assert torch.get_num_threads() == trained_with + 1
    finally:
        torch.set_num_threads(before)
    assert load_checkpoint(run / "checkpoints" / "last.pt")["threads"] == trained_with
    assert not any("threads" in change for change in read_summary(run)["resumes"][0]["changes"])
    steps = [(row["loss"], row["grad_norm"]) for row in read_csv(run / "metrics.csv")]
    assert steps == [(row["loss"], row["grad_norm"]) for row in read_csv(whole / "metrics.csv")]
