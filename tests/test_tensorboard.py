"""`output.tensorboard: true`: TensorBoard event files that hold what metrics.csv holds."""

from __future__ import annotations

import importlib.util

import pytest

from tests.conftest import SMALL_TEACHER, config_error, guide_config, invoke, read_csv, train_ok, write_config

DATA = SMALL_TEACHER


def events(directory):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    accumulator = EventAccumulator(str(directory), size_guidance={"scalars": 0, "tensors": 0})
    accumulator.Reload()
    return accumulator


def test_tensorboard_holds_every_logged_value_of_metrics_csv(tmp_path):
    grouped = {"name": "adam", "lr": 1e-3, "param_groups": [{"params": "*.bias", "lr": 1e-4}]}
    config = guide_config(
        data={**DATA, "test": {}}, output={"tensorboard": True}, clip={"max_norm": 1.0}, optimizer=grouped
    )
    run_dir = train_ok(write_config(tmp_path, config), tmp_path / "runs")
    written = events(run_dir / "tensorboard")
    rows = read_csv(run_dir / "metrics.csv")
    tags = (
        ("train/loss", "loss"),
        ("train/lr", "lr"),
        ("train/grad_norm", "grad_norm"),
        ("train/lr_group1", "lr_group1"),
    )
    for tag, column in tags:
        scalars = written.Scalars(tag)
        assert [event.step for event in scalars] == [int(row["step"]) for row in rows]
        # TensorBoard stores 32-bit floats: equal to float32 rounding.
        assert [event.value for event in scalars] == pytest.approx(
            [float(row[column]) for row in rows], rel=1e-6
        )
    epochs = read_csv(run_dir / "epochs.csv")
    assert [event.value for event in written.Scalars("epoch/val_loss")] == pytest.approx(
        [float(row["val_loss"]) for row in epochs], rel=1e-6
    )
    assert len(written.Scalars("test/loss")) == 1
    assert "optimizer" in written.Tensors("config/text_summary")[0].tensor_proto.string_val[0].decode()
    hparams = events(run_dir / "tensorboard").summary_metadata
    assert any("hparams" in str(metadata.plugin_data.plugin_name) for metadata in hparams.values())


def test_a_comparison_writes_one_event_directory_per_run(tmp_path):
    write_config(tmp_path, guide_config(data=DATA, output={"tensorboard": True}), "base.yaml")
    runs = {"adam": {}, "sgd": {"optimizer": {"name": "sgd"}}}
    path = write_config(tmp_path, {"base": "base.yaml", "seeds": 1, "runs": runs}, "c.yaml")
    invoke("compare", path, "--out", tmp_path / "out", "--quiet")
    found = sorted(path.parent.parent.name for path in (tmp_path / "out").glob("*/*/*/tensorboard/events.*"))
    assert found == ["adam-seed0", "sgd-seed0"]


def test_without_the_package_check_says_how_to_install_it(tmp_path, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "tensorboard" else real(name, *a)
    )
    config = write_config(tmp_path, guide_config(output={"tensorboard": True}))
    message = config_error(invoke("check", config))
    assert "output.tensorboard" in message and "pip install 'optcli[tensorboard]'" in message


def test_steps_a_resumed_run_logs_again_appear_once(tmp_path):
    """checkpoint_every: 2 over 3 epochs: the last checkpoint is epoch 2's, so a resume to 4 epochs
    logs epoch 3 again; TensorBoard shows it once, as the uninterrupted run's."""
    train = {"epochs": 3, "checkpoint_every": 2}
    config = write_config(tmp_path, guide_config(data=DATA, output={"tensorboard": True}, train=train))
    run_dir = train_ok(config, tmp_path / "runs")
    resumed = invoke("resume", run_dir, "--set", "train.epochs=4", "--allow-changes", "--quiet")
    assert resumed.exit_code == 0, resumed.output
    whole = train_ok(config, tmp_path / "whole", "--set", "train.epochs=4")
    for directory in (run_dir, whole):
        rows = read_csv(directory / "metrics.csv")
        scalars = events(directory / "tensorboard").Scalars("train/loss")
        assert [event.step for event in scalars] == [int(row["step"]) for row in rows]
        assert [event.value for event in scalars] == pytest.approx(
            [float(row["loss"]) for row in rows], rel=1e-6
        )
