"""Mistakes that used to train to the end in silence, or crash at the first step: each is a clear
message before anything is written (exit 2), or a warning where the run can still mean something."""

from __future__ import annotations

import torch

from tests.conftest import (
    SMALL_TEACHER,
    assert_clean_exit,
    config_error,
    invoke,
    read_csv,
    train_ok,
    write_config,
)


def regression_file(directory) -> str:
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(64, 4, generator=generator)
    torch.save({"x": x, "y": x.sum(dim=1)}, directory / "values.pt")
    return "values.pt"


def test_cross_entropy_over_one_output_is_refused(tmp_path):
    config = {
        "device": "cpu",
        "model": {"name": "mlp", "hidden": [8]},
        "data": {"name": "tensors", "path": regression_file(tmp_path), "batch_size": 16},
        "loss": "cross_entropy",
        "optimizer": {"name": "sgd", "lr": 0.1},
    }
    message = config_error(invoke("train", write_config(tmp_path, config), "--out", tmp_path / "runs"))
    assert "over a single output per sample is always 0" in message
    assert "loss: mse" in message
    assert not (tmp_path / "runs").exists()


def test_more_outputs_than_classes_warns_and_strict_refuses(tmp_path):
    config = {
        "device": "cpu",
        "model": {"name": "mlp", "hidden": [8], "out_features": 1000},
        "data": dict(SMALL_TEACHER),
        "optimizer": {"name": "adam"},
        "train": {"epochs": 1},
    }
    path = write_config(tmp_path, config)
    checked = invoke("check", path)
    assert_clean_exit(checked, 0)
    assert "it gives 1000 outputs per sample, but the data has 3 classes" in checked.output
    strict = config_error(invoke("check", path, "--strict"))
    assert "1000 outputs" in strict
    trained = invoke("train", path, "--out", tmp_path / "runs")
    assert_clean_exit(trained, 0)
    assert "it gives 1000 outputs per sample" in trained.stderr  # among the run's first lines


LABELS_FROM_ONE = """
import torch
from torch.utils.data import Dataset


class Digits(Dataset):
    '''Ten classes, labelled 1 to 10 (as a spreadsheet counts).'''

    classes = [str(number) for number in range(1, 11)]

    def __init__(self):
        self.x = torch.randn(40, 3, generator=torch.Generator().manual_seed(0))

    def __len__(self):
        return len(self.x)

    def __getitem__(self, index):
        return self.x[index], index % 10 + 1
"""


def test_class_labels_outside_the_classes_are_named_before_training(tmp_path):
    (tmp_path / "digits.py").write_text(LABELS_FROM_ONE)
    config = {
        "device": "cpu",
        "model": {"name": "mlp", "hidden": [8]},
        "data": {"name": "digits.py:Digits", "batch_size": 20, "shuffle": False},
        "optimizer": {"name": "adam"},
    }
    message = config_error(invoke("train", write_config(tmp_path, config), "--out", tmp_path / "runs"))
    assert "has labels from 1 to 10 in its first batch, but 10 classes (labels 0 to 9)" in message
    assert "number the labels from 0" in message
    assert not (tmp_path / "runs").exists()


NON_SCALAR_LOSS = """
import torch


class PerSampleLoss(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.layer = torch.nn.Linear(8, 3)

    def forward(self, inputs, targets):
        return torch.nn.functional.cross_entropy(self.layer(inputs), targets, reduction="none")
"""


def test_a_model_returning_a_per_sample_loss_is_refused_by_the_dry_run(tmp_path):
    (tmp_path / "own.py").write_text(NON_SCALAR_LOSS)
    config = {
        "device": "cpu",
        "model": {"name": "own.py:PerSampleLoss"},
        "data": dict(SMALL_TEACHER),
        "loss": "from_model",
        "optimizer": {"name": "adam"},
    }
    message = config_error(invoke("check", write_config(tmp_path, config)))
    assert "loss: from_model: the model returned a loss of shape [32], not one number" in message
    fixed = NON_SCALAR_LOSS.replace('reduction="none")', 'reduction="none").mean()')
    (tmp_path / "fixed.py").write_text(fixed)
    config = {**config, "model": {"name": "fixed.py:PerSampleLoss"}, "train": {"epochs": 1}}
    train_ok(write_config(tmp_path, config, "fixed.yaml"), tmp_path / "runs")


def small(**sections):
    config = {
        "device": "cpu",
        "model": {"name": "mlp", "hidden": [8]},
        "data": dict(SMALL_TEACHER),
        "optimizer": {"name": "adam", "lr": 0.01},
        "train": {"epochs": 1},
    }
    return {**config, **sections}


def test_a_loss_per_sample_is_refused_before_anything_is_written(tmp_path):
    config = small(loss={"name": "cross_entropy", "reduction": "none"})
    message = config_error(invoke("train", write_config(tmp_path, config), "--out", tmp_path / "runs"))
    assert "loss.reduction: 'none' gives a loss per sample" in message
    assert not (tmp_path / "runs").exists()


def test_a_summed_loss_warns_and_strict_refuses(tmp_path):
    path = write_config(tmp_path, small(loss={"name": "cross_entropy", "reduction": "sum"}))
    checked = invoke("check", path)
    assert_clean_exit(checked, 0)
    assert (
        "warning: loss.reduction: sum makes the loss and its gradient grow with the batch size"
        in checked.stderr
    )
    assert "(--strict) loss.reduction: sum" in config_error(invoke("check", path, "--strict"))


def test_a_learning_rate_given_as_a_one_element_list_trains(tmp_path):
    """The hint says 'a number or a list of numbers' (a tensor lr, of torch's default dtype): it is
    checked and trains, where the dry run used to fail on a meta tensor."""
    run = train_ok(write_config(tmp_path, small(optimizer={"name": "adam", "lr": [0.01]})), tmp_path / "runs")
    assert float(read_csv(run / "metrics.csv")[0]["lr"]) == float(torch.tensor(0.01))


def test_check_names_a_schedulers_inner_file_among_the_code_it_ran(tmp_path):
    (tmp_path / "warm.py").write_text(
        "import torch\n\n\nclass Warm(torch.optim.lr_scheduler.LinearLR):\n    pass\n"
    )
    scheduler = {
        "name": "sequential_lr",
        "milestones": [1],
        "schedulers": [{"name": "warm.py:Warm"}, {"name": "cosine_annealing_lr"}],
    }
    checked = invoke("check", write_config(tmp_path, small(scheduler=scheduler, train={"epochs": 2})))
    assert_clean_exit(checked, 0)
    assert f"checking ran code from {tmp_path / 'warm.py'}" in checked.stdout


def test_a_control_character_in_the_name_is_a_config_error(tmp_path):
    message = config_error(invoke("check", write_config(tmp_path, small(name="a\x00b"))))
    assert "name: 'a\\x00b' must be usable as a folder name (no '/', no control characters)" in message


def test_sizes_no_machine_here_can_hold_are_refused_before_anything_is_written(tmp_path):
    """Counted on the meta device and from the data's shape: exit 2 naming what to change, no run folder."""
    config = {
        "model": {"name": "mlp", "hidden": [64]},
        "data": {"name": "teacher", "samples": 2048, "features": 32, "classes": 4},
        "optimizer": "adam",
    }
    for key, value, expected in (
        ("model", {"name": "mlp", "hidden": [10**10]}, "model: its 370,000,000,004 parameters need"),
        ("data", {**config["data"], "samples": 10**11}, "data: 100,000,000,000 samples of 32 values need"),
    ):
        path = write_config(tmp_path, {**config, key: value})
        message = config_error(invoke("train", path, "--out", tmp_path / "runs"))
        assert expected in message and "more than this machine's" in message, message
        assert not (tmp_path / "runs").exists()
