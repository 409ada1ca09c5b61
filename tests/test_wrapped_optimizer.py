"""Optimizers that wrap another (Lookahead): the wrapped one is a nested section, like SequentialLR's
schedulers, and the run equals a hand-written loop with the same wrapper."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import torch
import yaml

from tests.conftest import assert_clean_exit, config_error, invoke, read_csv, train_ok, write_config

# Zhang et al. 2019, as a user's file would hold it (pytorch_optimizer's Lookahead takes the same form).
LOOKAHEAD = """
import torch


class Lookahead(torch.optim.Optimizer):
    def __init__(self, optimizer, k: int = 5, alpha: float = 0.5):
        self.optimizer, self.k, self.alpha = optimizer, k, alpha
        super().__init__(optimizer.param_groups, optimizer.defaults)
        self.param_groups = optimizer.param_groups  # one set of groups: schedulers reach the wrapped one
        self.steps = 0
        self.slow = [p.detach().clone() for group in self.param_groups for p in group["params"]]

    @torch.no_grad()
    def step(self, closure=None):
        loss = self.optimizer.step(closure)
        self.steps += 1
        if self.steps % self.k == 0:
            fast = [p for group in self.param_groups for p in group["params"]]
            for slow, weights in zip(self.slow, fast):
                slow.add_(weights - slow, alpha=self.alpha)
                weights.copy_(slow)
        return loss


class Net(torch.nn.Sequential):
    def __init__(self):
        super().__init__(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3))
"""


def setup(tmp_path: Path, optimizer: dict) -> Path:
    (tmp_path / "lookahead.py").write_text(LOOKAHEAD)
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(64, 4, generator=generator)
    torch.save({"x": x, "y": (x[:, 0] > 0).long() + (x[:, 1] > 0).long()}, tmp_path / "d.pt")
    config = {
        "seed": 4,
        "device": "cpu",
        "model": {"name": "lookahead.py:Net"},
        "data": {"name": "tensors", "path": "d.pt", "batch_size": 16, "shuffle": False},
        "optimizer": optimizer,
        "scheduler": {"name": "step_lr", "step_size": 1, "gamma": 0.5},
        "train": {"epochs": 3},
    }
    return write_config(tmp_path, config)


def test_lookahead_wraps_a_nested_optimizer_and_equals_a_hand_written_loop(tmp_path):
    optimizer = {
        "name": "lookahead.py:Lookahead",
        "k": 3,
        "alpha": 0.5,
        "optimizer": {"name": "adam", "lr": 0.05},
    }
    config = setup(tmp_path, optimizer)
    # This plain Lookahead keeps its slow weights and step count outside its state dict, so a resumed
    # run would differ: it is refused with checkpoints, and trains without them.
    refused = config_error(invoke("check", config))
    assert "does not restore it exactly" in refused and "train.checkpoint: false" in refused
    run = train_ok(config, tmp_path / "runs", "--set", "train.checkpoint=false")
    rows = read_csv(run / "metrics.csv")

    spec = importlib.util.spec_from_file_location("lookahead_by_hand", tmp_path / "lookahead.py")
    assert spec is not None and spec.loader is not None
    user = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(user)
    torch.manual_seed(4)
    model = user.Net()
    wrapper = user.Lookahead(torch.optim.Adam(model.parameters(), lr=0.05), k=3, alpha=0.5)
    scheduler = torch.optim.lr_scheduler.StepLR(wrapper, step_size=1, gamma=0.5)
    data = torch.load(tmp_path / "d.pt")
    losses, rates = [], []
    for _ in range(3):
        for start in range(0, 64, 16):
            wrapper.zero_grad()
            loss = torch.nn.functional.cross_entropy(
                model(data["x"][start : start + 16]), data["y"][start : start + 16]
            )
            loss.backward()
            rates.append(wrapper.param_groups[0]["lr"])
            wrapper.step()
            losses.append(loss.item())
        scheduler.step()
    assert [float(row["loss"]) for row in rows] == losses
    assert [float(row["lr"]) for row in rows] == rates  # the schedule reached the wrapped Adam

    # The resolved config records the nested section, and trains again as it is.
    recorded = yaml.safe_load((run / "config.yaml").read_text())["optimizer"]
    assert recorded["k"] == 3 and recorded["optimizer"]["name"] == "Adam"
    assert recorded["optimizer"]["lr"] == 0.05
    assert_clean_exit(invoke("check", run / "config.yaml"), 0)


def test_a_wrapper_without_its_nested_optimizer_or_with_a_bad_one_is_a_config_error(tmp_path):
    missing = config_error(invoke("check", setup(tmp_path, {"name": "lookahead.py:Lookahead"})))
    assert "optimizer.optimizer: lookahead.py:Lookahead wraps another optimizer" in missing
    bad = {"name": "lookahead.py:Lookahead", "optimizer": {"name": "adam", "lr": -1.0, "betas": "x"}}
    message = config_error(invoke("check", setup(tmp_path, bad)))
    assert "optimizer.optimizer.betas" in message
    unknown = {"name": "lookahead.py:Lookahead", "optimizer": {"name": "adma"}}
    assert "optimizer.optimizer.name" in config_error(invoke("check", setup(tmp_path, unknown)))
