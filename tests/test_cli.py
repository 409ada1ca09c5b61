"""The commands as a user runs them, asserting on the files they write."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch
import yaml

from tests.conftest import (
    REPO,
    assert_clean_exit,
    column,
    guide_config,
    invoke,
    only_run_dir,
    read_csv,
    read_summary,
    run_dirs,
    train_ok,
    write_config,
)


def test_train_writes_the_run_directory(tmp_path):
    config = write_config(tmp_path, guide_config(name="guide", scheduler={"name": "step", "step_size": 1}))
    result = invoke("train", config, "--out", tmp_path / "runs")
    assert_clean_exit(result, 0)
    run_dir = only_run_dir(tmp_path / "runs")
    assert run_dir.parent.name == "guide"
    assert sorted(path.name for path in run_dir.iterdir()) == [
        ".optcli.lock",  # held by the one process that writes the run, while it does
        "checkpoints",
        "config.yaml",
        "data.json",
        "epochs.csv",
        "metrics.csv",
        "summary.json",
    ]
    metrics = read_csv(run_dir / "metrics.csv")
    assert list(metrics[0]) == ["step", "epoch", "loss", "lr", "grad_norm", "elapsed_s"]
    assert [int(row["step"]) for row in metrics] == list(range(1, 9))
    epochs = read_csv(run_dir / "epochs.csv")
    assert list(epochs[0]) == ["epoch", "step", "train_loss", "lr", "elapsed_s"]
    summary = read_summary(run_dir)
    assert summary["status"] == "completed"
    assert summary["final_loss"] == float(epochs[-1]["train_loss"])
    assert summary["best_loss"] == min(column(epochs, "train_loss"))
    assert (summary["steps"], summary["epochs"], summary["seed"], summary["device"]) == (8, 2, 0, "cpu")
    for key in ("wall_time_s", "steps_per_second", "torch_version", "config_hash"):
        assert summary[key]
    # Not on a terminal: one plain line per epoch, then the summary line naming the run directory.
    lines = result.stdout.splitlines()
    assert lines[0].startswith("epoch 1/2") and lines[1].startswith("epoch 2/2")
    assert str(run_dir) in lines[-1] and lines[-1].startswith("completed")


def test_resolved_config_records_defaults_and_reruns_identically(tmp_path):
    config = write_config(tmp_path, guide_config(loss={"name": "cross_entropy", "label_smoothing": 0.1}))
    run_dir = train_ok(config, tmp_path / "runs")
    recorded = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert recorded["optimizer"]["betas"] == [0.9, 0.999]  # a default, recorded
    assert recorded["model"]["in_features"] == 784 and recorded["model"]["out_features"] == 10
    assert recorded["loss"]["label_smoothing"] == 0.1
    rerun = train_ok(run_dir / "config.yaml", tmp_path / "rerun")
    assert read_summary(rerun)["config_hash"] == read_summary(run_dir)["config_hash"]
    assert column(read_csv(rerun / "metrics.csv"), "loss") == column(
        read_csv(run_dir / "metrics.csv"), "loss"
    )


def test_set_overrides_values(tmp_path):
    config = write_config(tmp_path, guide_config())
    run_dir = train_ok(config, tmp_path / "runs", "--set", "optimizer.lr=3e-4", "--set", "train.epochs=1")
    rows = read_csv(run_dir / "metrics.csv")
    assert {row["lr"] for row in rows} == {"0.0003"} and len(rows) == 4


def test_loss_shorthand_becomes_a_mapping_under_set(tmp_path):
    config = write_config(tmp_path, guide_config(loss="cross_entropy"))
    result = invoke("check", config, "--set", "loss.label_smoothing=0.2", "--resolved")
    assert_clean_exit(result, 0)
    assert "label_smoothing: 0.2" in result.stdout


def test_loss_defaults_follow_the_targets(tmp_path):
    import torch

    torch.save({"x": torch.randn(32, 3), "y": torch.randn(32)}, tmp_path / "regression.pt")
    config = guide_config(data={"name": "tensors", "path": "regression.pt", "batch_size": 8})
    run_dir = train_ok(write_config(tmp_path, config), tmp_path / "runs")
    recorded = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert recorded["loss"]["name"] == "mse" and recorded["model"]["out_features"] == 1
    classification = train_ok(write_config(tmp_path, guide_config(), "c.yaml"), tmp_path / "c")
    assert yaml.safe_load((classification / "config.yaml").read_text())["loss"]["name"] == "cross_entropy"


def test_npz_tensors(tmp_path):
    import numpy

    numpy.savez(tmp_path / "data.npz", x=numpy.random.rand(40, 5), y=numpy.arange(40) % 3)
    config = guide_config(data={"name": "tensors", "path": "data.npz", "batch_size": 10})
    run_dir = train_ok(write_config(tmp_path, config), tmp_path / "runs")
    assert len(read_csv(run_dir / "metrics.csv")) == 8
    assert yaml.safe_load((run_dir / "config.yaml").read_text())["model"]["out_features"] == 3


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ({"x": [1, 2]}, "must hold a mapping with 'x'"),
        (None, "should end in .pt or .npz"),
    ],
)
def test_bad_tensor_files(tmp_path, content, message):
    import torch

    path = tmp_path / ("data.pt" if content is not None else "data.txt")
    if content is not None:
        torch.save(content, path)
    else:
        path.write_text("1,2,3")
    config = guide_config(data={"name": "tensors", "path": path.name})
    result = invoke("check", write_config(tmp_path, config))
    assert_clean_exit(result, 2)
    assert message in result.stderr


def test_a_missing_data_file(tmp_path):
    config = guide_config(data={"name": "tensors", "path": "nope.pt"})
    result = invoke("check", write_config(tmp_path, config))
    assert_clean_exit(result, 2)
    assert "no such file" in result.stderr and "nope.pt" in result.stderr


def test_runs_never_overwrite_each_other(tmp_path):
    config = write_config(tmp_path, guide_config(train={"epochs": 1}))
    for _ in range(3):
        train_ok(config, tmp_path / "runs")
    assert len(run_dirs(tmp_path / "runs")) == 3


def test_out_and_max_steps_and_device_options(tmp_path):
    config = write_config(tmp_path, guide_config(output={"dir": str(tmp_path / "ignored")}))
    run_dir = train_ok(config, tmp_path / "chosen", "--max-steps", "3", "--device", "cpu")
    assert run_dir.is_relative_to(tmp_path / "chosen") and not (tmp_path / "ignored").exists()
    assert read_summary(run_dir)["steps"] == 3


def test_quiet_prints_only_the_summary_line(tmp_path):
    result = invoke("train", write_config(tmp_path, guide_config()), "--out", tmp_path / "runs", "--quiet")
    assert_clean_exit(result, 0)
    assert len(result.stdout.strip().splitlines()) == 1
    assert "final loss" in result.stdout


def test_check_accepts_a_valid_config_without_training(tmp_path):
    config = write_config(tmp_path, guide_config(output={"dir": str(tmp_path / "runs")}))
    result = invoke("check", config)
    assert_clean_exit(result, 0)
    assert result.stdout.startswith("ok:") and "8 steps" in result.stdout
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("out", ["file", "file/runs"])
def test_an_unwritable_output_directory_is_a_clear_error(tmp_path, out):
    # A path at or under a regular file cannot be created, even by root (a read-only folder can).
    (tmp_path / "file").write_text("not a directory")
    result = invoke("train", write_config(tmp_path, guide_config()), "--out", tmp_path / out)
    assert_clean_exit(result, 2)
    assert "cannot create" in result.stderr
    assert (tmp_path / "file").read_text() == "not a directory"


def test_debug_shows_the_traceback(tmp_path):
    result = invoke("train", tmp_path / "nope.yaml", "--debug")
    assert result.exit_code == 2
    assert "Traceback" in result.stderr


def test_version():
    result = invoke("--version")
    assert_clean_exit(result, 0)
    assert result.stdout.startswith("optcli ")


def test_usage_errors_exit_2():
    assert invoke("train").exit_code == 2
    assert invoke("frobnicate").exit_code == 2


def run_module(*args: str) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, cwd=REPO, env=environment, timeout=120
    )


def test_python_dash_m_works():
    result = run_module("-m", "optcli", "--version")
    assert result.returncode == 0 and result.stdout.startswith("optcli ")


def test_help_does_not_import_torch():
    code = (
        "import sys; from optcli.cli import app; sys.argv = ['optcli', '--help']\n"
        "try:\n    app()\nexcept SystemExit:\n    pass\nprint('torch' in sys.modules)"
    )
    result = run_module("-c", code)
    assert result.returncode == 0, result.stderr
    assert "Usage" in result.stdout and result.stdout.strip().endswith("False")


def test_torch_is_imported_without_collections_and_left_frozen():
    """The collector would walk the import's objects several times over: a quarter of the import."""
    code = (
        "import gc; from optcli.process.torch_import import import_torch; collections = []\n"
        "gc.callbacks.append(lambda phase, info: collections.append(info['generation']))\n"
        "import_torch(); print(collections, gc.isenabled(), gc.get_freeze_count() > 100_000)"
    )
    result = run_module("-c", code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["[]", "True", "True"]


@pytest.mark.slow
def test_a_real_process_exits_2_on_a_config_error_without_traceback(tmp_path):
    config = write_config(tmp_path, guide_config(optimizer={"name": "adam", "momentum": 0.9}))
    result = run_module("-m", "optcli", "train", str(config))
    assert result.returncode == 2
    assert result.stderr.startswith("error: optimizer.momentum") and "Traceback" not in result.stderr


def test_help_lists_every_command():
    result = invoke("--help")
    assert_clean_exit(result, 0)
    for command in ("train", "compare", "resume", "check", "list"):
        assert command in result.stdout


def test_the_files_a_run_writes_are_readable_as_the_umask_says(tmp_path):
    # Colleagues on a shared server read runs: no file is private unless the user's umask says so.
    previous = os.umask(0o022)
    try:
        from optcli.train import rundir

        rundir._umask.cache_clear()
        run_dir = train_ok(write_config(tmp_path, guide_config()), tmp_path / "runs")
    finally:
        os.umask(previous)
        rundir._umask.cache_clear()
    written = [path for path in run_dir.rglob("*") if path.is_file()]
    assert {path.name for path in written} >= {
        "config.yaml",
        "summary.json",
        "data.json",
        "metrics.csv",
        "last.pt",
    }
    assert {path.name: oct(path.stat().st_mode & 0o777) for path in written} == {
        path.name: "0o644" for path in written
    }


def test_tiny_losses_are_shown_in_scientific_notation(tmp_path):
    # An exactly linear target: the loss falls far below what four decimals can show.
    x = torch.randn(64, 4, generator=torch.Generator().manual_seed(0))
    torch.save({"x": x, "y": x @ torch.tensor([[1.0], [-2.0], [0.5], [3.0]])}, tmp_path / "d.pt")
    config = {
        "device": "cpu",
        "model": {"name": "linear"},
        "data": {"name": "tensors", "path": "d.pt", "batch_size": 64},
        "optimizer": {"name": "sgd", "lr": 0.3},
        "train": {"epochs": 50},
    }
    result = invoke("train", write_config(tmp_path, config), "--out", tmp_path / "runs", "--quiet")
    assert_clean_exit(result, 0)
    final = result.stdout.split("final loss ")[1].split(",")[0]
    assert "e-" in final and float(final) < 1e-3, result.stdout


def test_the_live_displays_show_the_time_remaining(tmp_path):
    # Drawn on a console that takes itself for a terminal, from a real run's records and a real plan.
    import io

    from rich.console import Console

    from optcli.compare.display import LiveComparison
    from optcli.compare.planning.plan import CommandLine, load_plan
    from optcli.compare.running.jobs import JobOutcome, plan_jobs
    from optcli.config.loading import load_config
    from optcli.config.resolve import resolve_config
    from optcli.train.loop import run_training
    from optcli.train.records import RunStarted, StepRecord
    from optcli.train.session import build_session
    from optcli.train.sinks import RunOutcome
    from optcli.train.sinks.display import LiveDisplay

    screen = io.StringIO()
    display = LiveDisplay(Console(file=screen, force_terminal=True, width=140), "run")
    path = write_config(tmp_path, guide_config(train={"epochs": 3}))
    for record in run_training(build_session(resolve_config(load_config(path)))):
        display.handle(record)
    display.close(RunOutcome("completed"))
    assert "eta 0.0s" in screen.getvalue()  # the run's time remaining, down to nothing left
    write_config(tmp_path, guide_config(train={"epochs": 2}), "base.yaml")
    runs = {"adam": {}, "sgd": {"optimizer": {"name": "sgd"}}}
    plan = load_plan(
        [write_config(tmp_path, {"base": "base.yaml", "seeds": 1, "runs": runs}, "c.yaml")], CommandLine()
    )
    jobs = plan_jobs(plan, tmp_path)
    screen = io.StringIO()
    with LiveComparison(Console(file=screen, force_terminal=True, width=140), jobs) as comparison:
        for job in jobs:
            comparison(job.index, RunStarted(2, 4, 8, 0, "", ""))
            comparison(job.index, StepRecord(8, 2, 0.5, 1e-3, None, 0.1))
            comparison(job.index, JobOutcome(job.index, "ok"))
    assert "all runs" in screen.getvalue() and "16/16" in screen.getvalue()  # 2 runs of 8 steps


def test_help_lists_train_first_then_using_a_run_then_comparing():
    result = invoke("--help")
    assert_clean_exit(result, 0)
    listed = [
        line.split()[0]
        for line in result.stdout.splitlines()
        if line.startswith(("│ ", "  ")) and line.split()
    ]
    commands = [
        name for name in listed if name in ("train", "resume", "predict", "generate", "compare", "list")
    ]
    assert commands == ["train", "resume", "predict", "generate", "compare", "list"]


def test_docs_commands_md_is_the_apps_own_help():
    """docs/commands.md's reference is generated from the commands: an option added, renamed or
    reworded without regenerating it fails here (and so in CI)."""
    result = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "commands_doc.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    page = (REPO / "docs" / "commands.md").read_text()
    for option in ("--executor", "--address", "--cpus-per-run", "--gpus-per-run", "--allow-changes"):
        assert f"`{option}" in page


def test_exports_choices_are_the_formats_it_writes():
    from optcli.cli.using import ExportFormat
    from optcli.use.exporting import SUFFIXES

    assert [form.value for form in ExportFormat] == list(SUFFIXES)
