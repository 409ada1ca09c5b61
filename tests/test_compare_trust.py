"""`compare --resume` trusts only what it can check: an arm whose config changed since the comparison
began is refused (or, with --allow-changes, run again from scratch), a damaged comparison.json is a
clear message, and runs that failed for a cause outside their config (a full disk, a damaged file)
run again, so the verdict never rests on them."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import yaml

from tests.conftest import (
    assert_clean_exit,
    config_error,
    invoke,
    read_csv,
    rows_without_times,
    write_config,
)

BASE = {
    "seed": 0,
    "device": "cpu",
    "model": {"name": "mlp", "hidden": [16]},
    "data": {"name": "teacher", "samples": 128, "features": 6, "classes": 3, "batch_size": 32},
    "optimizer": {"name": "sgd", "lr": 0.05},
    "train": {"epochs": 2},
}
COMPARE = {
    "base": "base.yaml",
    "seeds": [0, 1],
    "runs": {
        "sgd": {"optimizer": {"name": "sgd", "lr": 0.05}},
        "adam": {"optimizer": {"name": "adam", "lr": 0.01}},
    },
}


def compare_once(directory: Path, compare: dict | None = None, base: dict | None = None) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    write_config(directory, base or BASE, "base.yaml")
    path = write_config(directory, compare or COMPARE, "compare.yaml")
    assert_clean_exit(invoke("compare", path, "--out", directory / "out", "--quiet"), 0)
    return next((directory / "out").glob("compare-compare/*"))


def test_an_edited_arm_is_refused_then_rerun_from_scratch_with_allow_changes(tmp_path):
    directory = compare_once(tmp_path / "first")
    edited = {**COMPARE, "runs": {**COMPARE["runs"], "sgd": {"optimizer": {"name": "sgd", "lr": 0.2}}}}
    write_config(tmp_path / "first", edited, "compare.yaml")
    message = config_error(invoke("compare", "--resume", directory))
    assert "arm 'sgd': the config changed since the comparison started (optimizer.lr: 0.05 -> 0.2)" in message
    assert "arm 'adam'" not in message and "--allow-changes" in message
    result = invoke("compare", "--resume", directory, "--allow-changes", "--quiet")
    assert_clean_exit(result, 0)
    fresh = compare_once(tmp_path / "fresh", edited)
    for name in ("results.csv", "summary.csv"):
        assert rows_without_times(directory / name) == rows_without_times(fresh / name), name
    assert_clean_exit(invoke("compare", "--resume", directory, "--quiet"), 0)  # the record follows


def test_an_edited_base_changes_every_arm(tmp_path):
    directory = compare_once(tmp_path)
    write_config(tmp_path, {**BASE, "model": {"name": "mlp", "hidden": [16], "dropout": 0.1}}, "base.yaml")
    message = config_error(invoke("compare", "--resume", directory))
    assert "arm 'sgd'" in message and "arm 'adam'" in message and "model.dropout" in message


def test_a_damaged_comparison_json_is_a_clear_message(tmp_path):
    directory = compare_once(tmp_path)
    record = directory / "comparison.json"
    original = json.loads(record.read_text())
    for document, expected in (
        ({key: value for key, value in original.items() if key != "files"}, "files: required"),
        ({**original, "files": "compare.yaml"}, "files: must be a valid list"),
        ({**original, "extra": 1}, "extra: unknown key"),
        ({**original, "command_line": {**original["command_line"], "seeds": 3}}, "command_line.seeds"),
    ):
        record.write_text(json.dumps(document))
        message = config_error(invoke("compare", "--resume", directory))
        assert f"{record}: " in message and expected in message, message


def test_runs_that_failed_outside_their_config_run_again_on_resume(tmp_path):
    directory = compare_once(tmp_path / "first")
    expected = rows_without_times(directory / "results.csv")
    # One run failed on a full disk; another's checkpoints and config.yaml rotted after it stopped.
    full_disk = directory / "sgd-seed1" / "summary.json"
    summary = json.loads(full_disk.read_text())
    full_disk.write_text(
        json.dumps({**summary, "status": "failed", "diverged": False, "error": "No space left"})
    )
    rotten = directory / "adam-seed0"
    for name in ("last.pt", "best.pt"):
        (rotten / "checkpoints" / name).write_bytes(b"\0" * 64)
    (rotten / "config.yaml").write_text("model: [\n")
    rotten_summary = json.loads((rotten / "summary.json").read_text())
    (rotten / "summary.json").write_text(json.dumps({**rotten_summary, "status": "interrupted"}))
    for row in read_csv(directory / "results.csv"):
        assert row["status"] == "ok"
    assert_clean_exit(invoke("compare", "--resume", directory, "--quiet"), 0)
    assert rows_without_times(directory / "results.csv") == expected
    assert yaml.safe_load((rotten / "config.yaml").read_text())["optimizer"]["name"] == "Adam"


def test_an_edited_record_is_refused_whatever_it_edits(tmp_path):
    directory = compare_once(tmp_path)
    record = directory / "comparison.json"
    original = json.loads(record.read_text())
    for document in (
        {**original, "command_line": {**original["command_line"], "seeds": "0,1,2"}},
        {key: value for key, value in original.items() if key != "runs"},
        {
            **original,
            "runs": {name: digest for name, digest in original["runs"].items() if "seed1" not in name},
        },
        {**original, "files": [str(tmp_path / "elsewhere.yaml")]},
    ):
        record.write_text(json.dumps(document))
        message = config_error(invoke("compare", "--resume", directory))
        assert f"{record}: edited since the comparison wrote it" in message, message
    record.write_text(json.dumps(original))
    assert_clean_exit(invoke("compare", "--resume", directory, "--quiet"), 0)


def test_an_arm_edited_before_its_runs_started_is_refused_by_name(tmp_path):
    directory = compare_once(tmp_path)
    for run in directory.glob("adam-seed*"):  # as if stopped before the adam arm began
        shutil.rmtree(run)
    edited = {**COMPARE, "runs": {**COMPARE["runs"], "adam": {"optimizer": {"name": "adam", "lr": 0.1}}}}
    write_config(tmp_path, edited, "compare.yaml")
    message = config_error(invoke("compare", "--resume", directory))
    assert "arm 'adam': the config changed since the comparison started" in message
    assert "arm 'sgd'" not in message
    assert_clean_exit(invoke("compare", "--resume", directory, "--allow-changes", "--quiet"), 0)
    recorded = yaml.safe_load((directory / "adam-seed0" / "config.yaml").read_text())
    assert recorded["optimizer"]["lr"] == 0.1
    assert_clean_exit(invoke("compare", "--resume", directory, "--quiet"), 0)  # the record says what ran


def test_a_finished_runs_edited_files_are_refused_not_reported(tmp_path):
    directory = compare_once(tmp_path)
    expected = rows_without_times(directory / "results.csv")
    epochs = directory / "sgd-seed0" / "epochs.csv"
    kept = epochs.read_bytes()
    epochs.write_bytes(kept[:100])
    message = config_error(invoke("compare", "--resume", directory))
    assert f"{epochs}: shorter than when its run ended" in message, message
    epochs.write_bytes(kept.replace(b",", b";", 1))  # the same size, one byte changed
    message = config_error(invoke("compare", "--resume", directory))
    assert f"{epochs}: its rows are not those the run wrote" in message, message
    epochs.write_bytes(kept)
    summary_path = directory / "adam-seed1" / "summary.json"
    summary = json.loads(summary_path.read_text())
    summary_path.write_text(json.dumps({**summary, "final_loss": 0.001}))
    message = config_error(invoke("compare", "--resume", directory))
    assert f"{summary_path}: final_loss differ from what the run's checkpoint recorded" in message, message
    summary_path.write_text(json.dumps(summary))
    assert_clean_exit(invoke("compare", "--resume", directory, "--quiet"), 0)
    assert rows_without_times(directory / "results.csv") == expected


def test_edits_that_change_no_computation_resume_and_edits_that_do_are_refused(tmp_path):
    """The hash of what a run computes leaves out its name, where its files go and how often (rows,
    checkpoints) and its thread count: a comparison resumed with those edited goes on."""
    directory = compare_once(tmp_path)
    expected = rows_without_times(directory / "results.csv")
    shutil.rmtree(directory / "adam-seed1")  # (a run still to do)
    harmless = {
        **BASE,
        "name": "renamed",
        "train": {"epochs": 2, "log_every": 3, "checkpoint_every": 1, "threads": 1},
    }
    write_config(tmp_path, harmless, "base.yaml")
    assert_clean_exit(invoke("compare", "--resume", directory, "--quiet"), 0)
    assert rows_without_times(directory / "results.csv") == expected
    write_config(tmp_path, {**harmless, "model": {"name": "mlp", "hidden": [12]}}, "base.yaml")
    message = config_error(invoke("compare", "--resume", directory))
    assert "arm 'sgd'" in message and "arm 'adam'" in message and "model.hidden" in message, message


def test_a_comparison_recorded_with_the_older_hashes_resumes(tmp_path):
    """comparison.json written before the hashes left out the name and the files' cadence: each run's
    hash then covered everything but the output and the thread count."""
    from optcli.config.spec import NOT_COMPUTED_BEFORE, hash_resolved

    directory = compare_once(tmp_path)
    expected = rows_without_times(directory / "results.csv")
    record_path = directory / "comparison.json"
    record = json.loads(record_path.read_text())
    del record["hashes"], record["digest"]
    for run in record["runs"]:
        resolved = yaml.safe_load((directory / run / "config.yaml").read_text())
        record["runs"][run] = hash_resolved(resolved, NOT_COMPUTED_BEFORE)
    record_path.write_text(json.dumps(record, indent=2))
    shutil.rmtree(directory / "adam-seed1")
    assert_clean_exit(invoke("compare", "--resume", directory, "--quiet"), 0)
    assert rows_without_times(directory / "results.csv") == expected
