"""Scaling a run up on one process: gradient accumulation, mixed precision and torch.compile."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch
import yaml

from optcli.config.loading import RawConfig
from optcli.config.resolve import resolve_config
from optcli.train.checkpoints import load_checkpoint
from optcli.train.loop import run_training
from optcli.train.records import RunFinished, StepRecord
from optcli.train.session import build_session
from tests.conftest import (
    assert_clean_exit,
    config_error,
    invoke,
    read_csv,
    read_summary,
    train_ok,
    write_config,
)

# 120 samples: batches of 64 are 64 and 56; micro-batches of 16 are seven of 16 and one of 8, grouped by
# four into 64 and 56 (the last group has a short micro-batch: it must count by its samples).
DATA = {"name": "teacher", "samples": 120, "features": 8, "classes": 3}


def config(batch_size: int, **train) -> dict:
    return {
        "seed": 7,
        "device": "cpu",
        "model": {"name": "mlp", "hidden": [16]},  # no batch statistics
        "data": {**DATA, "batch_size": batch_size},
        "optimizer": {"name": "sgd", "lr": 0.3, "momentum": 0.9},
        "scheduler": {"name": "one_cycle", "max_lr": 0.5},  # its run length counts optimizer steps
        "train": {"epochs": 6, **train},
    }


def final_weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(run_dir / "checkpoints" / "last.pt")["model"]


def test_accumulating_four_batches_of_16_equals_batches_of_64(tmp_path):
    whole = train_ok(write_config(tmp_path, config(64), "whole.yaml"), tmp_path / "whole")
    accumulated = train_ok(write_config(tmp_path, config(16, accumulate=4), "acc.yaml"), tmp_path / "acc")
    expected, found = final_weights(whole), final_weights(accumulated)
    assert all(torch.allclose(found[key], expected[key], atol=1e-6) for key in expected)
    rows, whole_rows = read_csv(accumulated / "metrics.csv"), read_csv(whole / "metrics.csv")
    assert [row["step"] for row in rows] == [row["step"] for row in whole_rows]  # one row per optimizer step
    assert [row["lr"] for row in rows] == [row["lr"] for row in whole_rows]  # 12 steps of OneCycleLR
    for row, whole_row in zip(rows, whole_rows, strict=True):  # the mean loss of the step's samples
        assert float(row["loss"]) == pytest.approx(float(whole_row["loss"]), rel=1e-5)
    resolved = (accumulated / "config.yaml").read_text()
    assert "total_steps: 12" in resolved
    assert read_summary(accumulated)["steps"] == 12


def test_accumulation_with_a_short_last_group_resumes_exactly(tmp_path):
    values = config(16, accumulate=3, epochs=3)  # 8 micro-batches an epoch: groups of 3, 3 and 2
    values.pop("scheduler")
    path = write_config(tmp_path, values)
    reference = train_ok(path, tmp_path / "reference")
    assert read_summary(reference)["steps"] == 9
    first = train_ok(path, tmp_path / "runs", "--max-steps", "4")  # stops mid-epoch 2, after step 4
    result = invoke("resume", first, "--quiet", "--set", "train.max_steps=null", "--allow-changes")
    assert_clean_exit(result, 0)
    steps = [(row["step"], row["epoch"], row["loss"]) for row in read_csv(first / "metrics.csv")]
    assert steps == [(row["step"], row["epoch"], row["loss"]) for row in read_csv(reference / "metrics.csv")]
    expected, found = final_weights(reference), final_weights(first)
    assert all(torch.equal(found[key], expected[key]) for key in expected)


def test_bf16_on_the_cpu_runs_forward_under_autocast(tmp_path):
    full = train_ok(write_config(tmp_path, config(16), "full.yaml"), tmp_path / "full")
    half = train_ok(write_config(tmp_path, config(16, precision="bf16"), "bf16.yaml"), tmp_path / "bf16")
    full_losses = [float(row["loss"]) for row in read_csv(full / "metrics.csv")]
    half_losses = [float(row["loss"]) for row in read_csv(half / "metrics.csv")]
    assert half_losses != full_losses  # bf16 rounding shows...
    assert half_losses[-1] == pytest.approx(full_losses[-1], rel=0.1)  # ...but it trains the same way
    # The weights stay float32 (autocast casts inside the forward pass only).
    assert all(value.dtype == torch.float32 for value in final_weights(half).values())


def test_fp16s_scaler_skips_inf_gradients_without_moving_the_schedule(tmp_path):
    """fp16 needs CUDA in a config; its scaler's logic is the same on the CPU, so the test sets it there."""
    spec = resolve_config(RawConfig(config(16, epochs=2), tmp_path, "x"))
    per_step = dataclasses.replace(spec.scheduler, interval="step")
    spec = dataclasses.replace(
        spec, train=spec.train.model_copy(update={"precision": "fp16"}), scheduler=per_step
    )
    session = build_session(spec)
    assert isinstance(session.scaler, torch.amp.GradScaler)
    # A first scale of 2**24 overflows fp16 gradients: those steps are skipped (not failed) while the
    # scaler halves its scale.
    session.scaler = torch.amp.GradScaler("cpu", init_scale=2.0**24)
    records = list(run_training(session))
    finished = next(record for record in records if isinstance(record, RunFinished))
    skipped = finished.extra["scaler_skipped_steps"]
    assert 1 <= skipped < spec.total_steps and session.scaler.get_scale() == 2.0 ** (24 - skipped)
    assert all(torch.isfinite(torch.tensor(r.loss)) for r in records if isinstance(r, StepRecord))
    # Only applied steps move OneCycleLR: it is `skipped` steps short of the run's end.
    assert session.scheduler.last_epoch == spec.total_steps - skipped


@pytest.mark.parametrize(
    ("device", "train", "optimizer", "expected"),
    [
        ("cpu", {"precision": "fp16"}, "sgd", "train.precision: fp16 needs a CUDA device"),
        ("cpu", {"precision": "half"}, "sgd", "train.precision"),
        ("cpu", {"accumulate": 2}, "lbfgs", "train.accumulate: LBFGS evaluates the loss inside its own step"),
        ("cpu", {"accumulate": 0}, "sgd", "train.accumulate"),
        (
            "cpu",
            {"compile": {"mode": "fastest"}},
            "sgd",
            "train.compile: torch.compile rejected its arguments: Unrecognized mode=fastest",
        ),
        ("cpu", {"compile": {"backend": "nope"}}, "sgd", "Invalid backend: 'nope'"),
        ("cpu", {"compile": {"moed": "max-autotune"}}, "sgd", "train.compile.moed"),
    ],
)
def test_scaling_mistakes_are_config_errors(tmp_path, device, train, optimizer, expected):
    values = {**config(16, **train), "device": device, "optimizer": {"name": optimizer}}
    values.pop("scheduler")
    message = config_error(invoke("check", write_config(tmp_path, values)))
    assert expected in message, message


def test_precision_32_may_be_written_as_a_number(tmp_path):
    assert_clean_exit(invoke("check", write_config(tmp_path, config(16, precision=32))), 0)


@pytest.mark.slow
def test_compiled_model_trains_as_the_eager_one_and_reports_its_compile_time(tmp_path):
    eager = train_ok(write_config(tmp_path, config(50, epochs=2), "eager.yaml"), tmp_path / "eager")
    compiled = train_ok(
        write_config(tmp_path, config(50, epochs=2, compile=True), "compiled.yaml"), tmp_path / "compiled"
    )
    eager_losses = [float(row["loss"]) for row in read_csv(eager / "metrics.csv")]
    compiled_losses = [float(row["loss"]) for row in read_csv(compiled / "metrics.csv")]
    assert compiled_losses == pytest.approx(eager_losses, rel=1e-4)
    summary = read_summary(compiled)
    assert isinstance(summary["compile_time_s"], float)  # reported apart from training time
    # The epoch's short last batch is a new shape: compiled once more, off the training clock too.
    assert summary["recompilations"] == 1  # (120 samples: batches of 50, 50 and 20)
    assert summary["train_time_s"] < summary["compile_time_s"]
    assert read_summary(eager).get("compile_time_s") is None
    expected = final_weights(eager)
    assert all(torch.allclose(final_weights(compiled)[key], expected[key], atol=1e-5) for key in expected)


def test_a_compile_error_names_train_compile(tmp_path):
    (tmp_path / "branchy.py").write_text(
        "import torch\n"
        "class Net(torch.nn.Module):\n"
        "    def __init__(self, in_features: int, out_features: int):\n"
        "        super().__init__()\n"
        "        self.layer = torch.nn.Linear(in_features, out_features)\n"
        "    def forward(self, x):\n"
        "        if x.sum() > 0:  # a branch on data: a graph break, which fullgraph forbids\n"
        "            return self.layer(x)\n"
        "        return -self.layer(x)\n"
    )
    values = {**config(16, compile={"fullgraph": True}), "model": {"name": "branchy.py:Net"}}
    # The meta device cannot run a branch on data: the check leaves it to the first step, not an error.
    eager = {**values, "train": {"epochs": 1}}
    assert_clean_exit(
        invoke("train", write_config(tmp_path, eager, "eager.yaml"), "--out", tmp_path / "e"), 0
    )
    result = invoke("train", write_config(tmp_path, values), "--out", tmp_path / "runs")
    assert_clean_exit(result, 1)
    assert "train.compile: torch.compile failed at the first step" in result.stderr, result.stderr
    assert "train.compile: false" in result.stderr


def test_fp16s_scaler_state_travels_in_the_checkpoint(tmp_path):
    from optcli.train.restoring import restore_session
    from optcli.train.run import train_run

    spec = resolve_config(RawConfig(config(16, epochs=2), tmp_path, "x"))
    spec = dataclasses.replace(spec, train=spec.train.model_copy(update={"precision": "fp16"}))
    (tmp_path / "run").mkdir()
    run = train_run(spec, run_dir=tmp_path / "run").run_dir
    checkpoint = load_checkpoint(run / "checkpoints" / "last.pt")
    assert checkpoint["scaler"]["scale"] == 2.0**16 and checkpoint["scaler"]["_growth_tracker"] == 16
    fresh = build_session(spec)
    restore_session(fresh, checkpoint)
    assert fresh.scaler is not None and fresh.scaler.state_dict() == checkpoint["scaler"]


def test_threads_sets_torchs_threads_for_the_run_and_is_recorded(tmp_path):
    record = tmp_path / "threads.txt"
    (tmp_path / "counting.py").write_text(
        "import torch\n"
        "class Net(torch.nn.Linear):\n"
        "    def __init__(self, in_features, out_features):\n"
        "        super().__init__(in_features, out_features)\n"
        f"        open({str(record)!r}, 'a').write(f'{{torch.get_num_threads()}}\\n')\n"
    )
    torch.set_num_threads(2)
    values = {**config(16), "model": {"name": "counting.py:Net"}, "scheduler": None}
    del values["scheduler"]
    run = train_ok(write_config(tmp_path, values), tmp_path / "runs", "--threads", "1")
    assert record.read_text().split()[-1] == "1"  # the real model, built inside the run
    assert torch.get_num_threads() == 2  # restored: the next run in this process is not changed by it
    assert yaml.safe_load((run / "config.yaml").read_text())["train"]["threads"] == 1
