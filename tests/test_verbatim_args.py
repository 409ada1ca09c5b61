"""`args:` passes a component's arguments verbatim, for those whose names are optcli's own keys (a
model factory's `name`, as `torchvision.models:get_model(name, **kwargs)` takes it)."""

from __future__ import annotations

import yaml

from tests.conftest import config_error, invoke, read_summary, train_ok, write_config

FACTORY = """
import torch


def get_model(name: str, num_classes: int = 10, hidden: int = 8):
    '''A torchvision-style factory: the architecture by name.'''
    widths = {"small": hidden, "large": 4 * hidden}
    if name not in widths:
        raise ValueError(f"unknown model {name!r}")
    return torch.nn.Sequential(
        torch.nn.Linear(4, widths[name]), torch.nn.ReLU(), torch.nn.Linear(widths[name], num_classes)
    )
"""


def factory_config(tmp_path, **model) -> dict:
    (tmp_path / "factory.py").write_text(FACTORY)
    return {
        "device": "cpu",
        "model": {"name": "factory.py:get_model", **model},
        "data": {"name": "teacher", "samples": 64, "features": 4, "classes": 3, "batch_size": 16},
        "optimizer": {"name": "adam", "lr": 0.01},
        "train": {"epochs": 1},
    }


def test_a_factory_argument_called_name_goes_under_args_and_the_run_repeats_from_its_config(tmp_path):
    config = factory_config(tmp_path, args={"name": "large", "num_classes": 3}, hidden=4)
    run = train_ok(write_config(tmp_path, config), tmp_path / "runs")
    recorded = yaml.safe_load((run / "config.yaml").read_text())["model"]
    assert recorded["args"] == {"name": "large"}  # only the colliding one needs args
    assert recorded["num_classes"] == 3 and recorded["hidden"] == 4
    again = train_ok(run / "config.yaml", tmp_path / "again")
    assert read_summary(again)["init_hash"] == read_summary(run)["init_hash"]  # a 16-wide hidden layer again
    assert read_summary(again)["final_loss"] == read_summary(run)["final_loss"]


def test_args_are_checked_against_the_signature_like_the_flat_form(tmp_path):
    misspelled = factory_config(tmp_path, args={"name": "small", "num_clases": 3})
    message = config_error(invoke("check", write_config(tmp_path, misspelled)))
    assert (
        "model.num_clases: factory.py:get_model has no argument 'num_clases' (did you mean 'num_classes'?)"
        in message
    )
    twice = factory_config(tmp_path, args={"name": "small", "hidden": 4}, hidden=8)
    message = config_error(invoke("check", write_config(tmp_path, twice, "twice.yaml")))
    assert "hidden: given both beside name and under args" in message
    missing = factory_config(tmp_path)
    message = config_error(invoke("check", write_config(tmp_path, missing, "missing.yaml")))
    assert "get_model requires 'name'; add it to model.args ('name' beside it is optcli's own key)" in message
