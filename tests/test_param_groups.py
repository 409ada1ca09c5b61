"""`optimizer.param_groups`: glob patterns on parameter names, each group with its own arguments."""

from __future__ import annotations

import math

import pytest
import yaml

from optcli.config.loading import load_config
from optcli.config.resolve import resolve_config
from optcli.train.checkpoints import load_checkpoint
from optcli.train.session import build_session
from tests.conftest import (
    assert_clean_exit,
    column,
    config_error,
    guide_config,
    invoke,
    read_csv,
    read_summary,
    train_ok,
    write_config,
)

# The mlp is Sequential(Flatten, Linear, ReLU, Linear): parameters 1.weight, 1.bias, 3.weight, 3.bias.
GROUPED = {
    "name": "adamw",
    "lr": 1e-3,
    "weight_decay": 0.05,
    "param_groups": [{"params": ["*.bias"], "weight_decay": 0.0}, {"params": "3.*", "lr": 1e-4}],
}


def test_groups_reach_the_optimizer_as_configured(tmp_path):
    path = write_config(tmp_path, guide_config(model={"name": "mlp", "hidden": [16]}, optimizer=GROUPED))
    session = build_session(resolve_config(load_config(path)))
    names = {id(parameter): name for name, parameter in session.model.named_parameters()}
    groups = [
        (sorted(names[id(p)] for p in group["params"]), group["lr"], group["weight_decay"])
        for group in session.optimizer.param_groups
    ]
    # The default group first (metrics.csv logs its rate); a parameter goes to the first group it matches.
    assert groups == [
        (["1.weight"], 1e-3, 0.05),
        (["1.bias", "3.bias"], 1e-3, 0.0),
        (["3.weight"], 1e-4, 0.05),
    ]


def test_check_shows_the_groups_and_train_records_every_groups_rate(tmp_path):
    scheduler = {"name": "step", "step_size": 1, "gamma": 0.5}
    config = guide_config(model={"name": "mlp", "hidden": [16]}, optimizer=GROUPED, scheduler=scheduler)
    path = write_config(tmp_path, config)
    checked = invoke("check", path)
    assert_clean_exit(checked, 0)
    assert "note: optimizer.param_groups:" in checked.stderr and "*.bias" in checked.stderr
    assert "lr 0.0001  weight_decay 0.05" in checked.stderr
    run_dir = train_ok(path, tmp_path / "runs")
    summary = read_summary(run_dir)
    # Two epochs of StepLR(1, 0.5): every group scaled as PyTorch does. metrics.csv logs the default
    # group's rate each step used (halved once by the last epoch); final_lrs are the rates at the end.
    assert summary["final_lrs"] == [2.5e-4, 2.5e-4, 2.5e-5]
    assert column(read_csv(run_dir / "metrics.csv"), "lr")[-1] == 5e-4
    # And every other group's rate, each step, in columns of their own after the fixed ones.
    rows = read_csv(run_dir / "metrics.csv")
    assert list(rows[0]) == [
        "step",
        "epoch",
        "loss",
        "lr",
        "grad_norm",
        "elapsed_s",
        "lr_group1",
        "lr_group2",
    ]
    for row in rows:
        scale = 0.5 ** (int(row["epoch"]) - 1)
        assert (float(row["lr_group1"]), float(row["lr_group2"])) == (1e-3 * scale, 1e-4 * scale)
    recorded = yaml.safe_load((run_dir / "config.yaml").read_text())["optimizer"]["param_groups"]
    assert recorded == [{"params": ["*.bias"], "weight_decay": 0.0}, {"params": ["3.*"], "lr": 1e-4}]
    assert_clean_exit(invoke("check", run_dir / "config.yaml"), 0)  # the record trains again


def test_group_mistakes_are_config_errors_naming_the_group(tmp_path):
    typo = {**GROUPED, "param_groups": [{"params": ["*.bais"], "weight_decay": 0.0}]}
    message = config_error(invoke("check", write_config(tmp_path, guide_config(optimizer=typo))))
    assert "optimizer.param_groups.0.params: '*.bais' matches no parameter of the model" in message
    assert "1.bias" in message
    foreign = {**GROUPED, "param_groups": [{"params": ["*.bias"], "momentum": 0.9}]}
    message = config_error(invoke("check", write_config(tmp_path, guide_config(optimizer=foreign), "f.yaml")))
    assert "optimizer.param_groups.0.momentum: AdamW has no argument 'momentum'" in message


def test_a_resume_with_a_changed_rate_gives_each_group_what_a_fresh_run_of_the_changed_config_would(tmp_path):
    """Biases keep their zero weight decay and the head its own rate; the schedule's base rates follow."""
    config = {
        "seed": 0,
        "device": "cpu",
        "model": {"name": "mlp", "hidden": [16]},
        "data": {"name": "teacher", "samples": 64, "features": 4, "classes": 3, "batch_size": 16},
        "optimizer": {
            "name": "adamw",
            "lr": 1e-2,
            "weight_decay": 0.05,
            "param_groups": [{"params": "*.bias", "weight_decay": 0.0}, {"params": "3.*", "lr": 3e-3}],
        },
        "scheduler": {"name": "cosine", "T_max": 4},
        "train": {"epochs": 4},
    }
    stopped = train_ok(write_config(tmp_path, config), tmp_path / "stopped", "--max-steps", "8")
    resumed = invoke(
        "resume",
        stopped,
        "--set",
        "optimizer.lr=5e-3",
        "--set",
        "train.max_steps=16",
        "--allow-changes",
        "-q",
    )
    assert_clean_exit(resumed, 0)
    changed = {**config, "optimizer": {**config["optimizer"], "lr": 5e-3}}
    fresh = train_ok(write_config(tmp_path, changed, "changed.yaml"), tmp_path / "fresh", "--max-steps", "16")
    after, expected = (load_checkpoint(run / "checkpoints" / "last.pt") for run in (stopped, fresh))
    groups, wanted = after["optimizer"]["param_groups"], expected["optimizer"]["param_groups"]
    assert [group["weight_decay"] for group in groups] == [0.05, 0.0, 0.05]
    assert [group["weight_decay"] for group in groups] == [group["weight_decay"] for group in wanted]
    assert [group["initial_lr"] for group in groups] == [5e-3, 5e-3, 3e-3]
    for group, fresh_group in zip(groups, wanted, strict=True):
        assert math.isclose(group["lr"], fresh_group["lr"], rel_tol=1e-9)
    assert after["scheduler"]["base_lrs"] == expected["scheduler"]["base_lrs"] == [5e-3, 5e-3, 3e-3]
    # metrics.csv's rows after the resume: every group's rate as the fresh run logged it.
    continued, fresh_rows = (read_csv(run / "metrics.csv")[8:] for run in (stopped, fresh))
    for key in ("lr", "lr_group1", "lr_group2"):
        assert column(continued, key) == pytest.approx(column(fresh_rows, key), rel=1e-9), key
