"""Any optimizer's state, any wrapper: state dicts are opaque, checkpoints hold the weights that were
scored, an optimizer whose state cannot be checkpointed is refused before training (and trains with
`train.checkpoint: false`), and that switch writes no checkpoint at all."""

from __future__ import annotations

import pytest
import torch

from optcli.config.loading import load_config
from optcli.config.resolve import resolve_config
from optcli.train.checkpoints import load_checkpoint
from optcli.train.evaluation import evaluate
from optcli.train.session import build_session
from tests.conftest import (
    SMALL_TEACHER,
    assert_clean_exit,
    config_error,
    invoke,
    read_csv,
    read_summary,
    run_dirs,
    train_ok,
    write_config,
)


def small(optimizer: dict, **train) -> dict:
    return {
        "seed": 0,
        "device": "cpu",
        "model": {"name": "mlp", "hidden": [16]},
        "data": dict(SMALL_TEACHER),
        "optimizer": optimizer,
        "train": {"epochs": 2, **train},
    }


def same_weights(first: dict, second: dict) -> bool:
    return first.keys() == second.keys() and all(torch.equal(first[key], second[key]) for key in first)


def test_the_readmes_lookahead_example_trains_past_epoch_one_and_resumes_exactly(tmp_path):
    pytest.importorskip("pytorch_optimizer")
    lookahead = {
        "name": "pytorch_optimizer:Lookahead",
        "k": 5,
        "alpha": 0.5,
        "optimizer": {"name": "adamw", "lr": 1e-3, "weight_decay": 0.01},
    }
    full = train_ok(write_config(tmp_path, small(lookahead, epochs=3), "full.yaml"), tmp_path / "full")
    half = train_ok(write_config(tmp_path, small(lookahead, epochs=1), "half.yaml"), tmp_path / "half")
    assert_clean_exit(invoke("resume", half, "--set", "train.epochs=3", "--allow-changes", "--quiet"), 0)
    expected = load_checkpoint(full / "checkpoints" / "last.pt")
    resumed = load_checkpoint(half / "checkpoints" / "last.pt")
    assert set(expected["optimizer"]) == {"lookahead_state", "base_optimizer"}  # not torch's layout
    assert same_weights(expected["model"], resumed["model"])
    assert [row["loss"] for row in read_csv(full / "metrics.csv")] == [
        row["loss"] for row in read_csv(half / "metrics.csv")
    ]


def test_a_schedule_free_checkpoint_holds_the_weights_that_were_scored(tmp_path):
    pytest.importorskip("schedulefree")
    config = small({"name": "schedulefree:AdamWScheduleFree", "lr": 0.01}, epochs=3)
    run = train_ok(write_config(tmp_path, config), tmp_path / "runs")
    spec = resolve_config(load_config(run / "config.yaml"))
    session = build_session(spec)
    for name in ("best.pt", "last.pt"):
        checkpoint = load_checkpoint(run / "checkpoints" / name)
        session.model.load_state_dict(dict(checkpoint["model"]))
        assert session.val_batches is not None
        metrics = evaluate(
            session.model, session.val_batches, session.loss_function, spec.forward, spec.metrics, True
        ).values
        epoch = int(checkpoint["loop"]["epoch"]) - 1
        reported = read_csv(run / "epochs.csv")[epoch - 1]
        assert metrics["loss"] == float(reported["val_loss"]), name
        # The training-mode weights, which a resume continues from, differ and sit beside them.
        assert not same_weights(checkpoint["model"], checkpoint["training_model"])


def test_a_schedule_free_run_resumes_exactly(tmp_path):
    pytest.importorskip("schedulefree")
    optimizer = {"name": "schedulefree:SGDScheduleFree", "lr": 0.05}
    full = train_ok(write_config(tmp_path, small(optimizer, epochs=3), "full.yaml"), tmp_path / "full")
    half = train_ok(write_config(tmp_path, small(optimizer, epochs=1), "half.yaml"), tmp_path / "half")
    assert_clean_exit(invoke("resume", half, "--set", "train.epochs=3", "--allow-changes", "--quiet"), 0)
    for name in ("model", "training_model"):
        assert same_weights(
            load_checkpoint(full / "checkpoints" / "last.pt")[name],
            load_checkpoint(half / "checkpoints" / "last.pt")[name],
        )


def test_an_optimizer_whose_state_cannot_be_checkpointed_is_refused_before_training(tmp_path):
    pytest.importorskip("pytorch_optimizer")
    config = write_config(tmp_path, small({"name": "pytorch_optimizer:AdaShift", "lr": 1e-3}))
    message = config_error(invoke("train", config, "--out", tmp_path / "runs"))
    assert "pytorch_optimizer:AdaShift cannot be used" in message
    assert "its state cannot be saved in a checkpoint" in message
    assert "train.checkpoint: false" in message
    assert not (tmp_path / "runs").exists()  # nothing written
    run = train_ok(config, tmp_path / "runs", "--set", "train.checkpoint=false")
    assert read_summary(run)["status"] == "completed"
    assert not list(run.rglob("*.pt"))


def test_an_optimizer_whose_state_dict_misses_state_is_refused(tmp_path):
    """State kept outside state_dict() makes a resumed run differ: the probe finds it before training."""
    (tmp_path / "forgetful.py").write_text(
        "import torch\n"
        "class Forgetful(torch.optim.SGD):\n"
        "    '''SGD whose step size shrinks with a counter that its state dict does not hold.'''\n"
        "    def __init__(self, params, lr=0.1):\n"
        "        super().__init__(params, lr=lr)\n"
        "        self.count = 0\n"
        "    def step(self, closure=None):\n"
        "        self.count += 1\n"
        "        for group in self.param_groups:\n"
        "            group['lr'] = 0.1 / self.count\n"
        "        return super().step(closure)\n"
    )
    config = write_config(tmp_path, small({"name": "forgetful.py:Forgetful"}))
    message = config_error(invoke("check", config))
    assert "forgetful.py:Forgetful cannot be used" in message
    assert "does not restore it exactly" in message


def test_second_order_optimizers_are_refused_with_the_reason(tmp_path):
    pytest.importorskip("pytorch_optimizer")
    config = write_config(tmp_path, small({"name": "pytorch_optimizer:AdaHessian", "lr": 0.1}))
    message = config_error(invoke("check", config))
    assert (
        "AdaHessian cannot be used: it needs second-order gradients (backward with create_graph=True)"
        in message
    )


def test_checkpoint_false_writes_no_checkpoint_at_all(tmp_path):
    config = small({"name": "adam", "lr": 0.01}, checkpoint=False)
    run = train_ok(write_config(tmp_path, config), tmp_path / "runs")
    assert not (run / "checkpoints").exists() or not list((run / "checkpoints").iterdir())
    summary = read_summary(run)
    assert summary["status"] == "completed"
    # Without best.pt the test data (if any) judges the last weights; asking for best is refused.
    refused = small({"name": "adam"}, checkpoint=False, test_on="best")
    refused["data"] = {**SMALL_TEACHER, "test_fraction": 0.2}
    message = config_error(invoke("check", write_config(tmp_path, refused, "best.yaml")))
    assert "train.test_on: best reads the best weights back from checkpoints/best.pt" in message
    message = config_error(invoke("resume", run))
    assert "no checkpoint" in message


def test_checkpoint_every_zero_still_writes_best_but_no_periodic_last(tmp_path):
    run = train_ok(write_config(tmp_path, small({"name": "adam"}, checkpoint_every=0)), tmp_path / "runs")
    assert (run / "checkpoints" / "best.pt").is_file()
    assert not (run / "checkpoints" / "last.pt").exists()
    assert run_dirs(tmp_path / "runs") == [run]
