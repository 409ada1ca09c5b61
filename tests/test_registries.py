"""Every registered optimizer, scheduler and loss builds and trains from a config; names match loosely."""

from __future__ import annotations

import inspect

import pytest
import torch
import yaml

from optcli.components.losses import LOSSES
from optcli.components.optimizers import OPTIMIZERS
from optcli.components.schedulers import SCHEDULERS
from tests.conftest import (
    assert_clean_exit,
    column,
    config_error,
    invoke,
    read_csv,
    read_summary,
    train_ok,
    write_config,
)


def small_config(**sections):
    config = {
        "seed": 0,
        "device": "cpu",
        "model": {"name": "mlp", "hidden": [8]},
        "data": {"name": "teacher", "samples": 64, "features": 8, "classes": 3, "batch_size": 16},
        "optimizer": {"name": "sgd", "lr": 0.01, "momentum": 0.9},
        "train": {"epochs": 3},
    }
    config.update(sections)
    return config


# Arguments without a default, per optimizer or scheduler: a new torch class that needs one fails here
# until it is added, so the registry never ships an entry nobody has run.
OPTIMIZER_ARGUMENTS = {"Muon": {}}
OPTIMIZER_MODELS = {"Muon": {"name": "linear", "bias": False}}  # Muon trains 2-D weights only
SCHEDULER_ARGUMENTS = {
    "ChainedScheduler": {
        "schedulers": [{"name": "step", "step_size": 1}, {"name": "exponential", "gamma": 0.9}]
    },
    "ConstantLR": {"total_iters": 1},
    "CosineAnnealingWarmRestarts": {"T_0": 2},
    "CyclicLR": {"base_lr": 1e-4, "max_lr": 1e-2},
    "ExponentialLR": {"gamma": 0.9},
    "MultiStepLR": {"milestones": [1, 2]},
    "OneCycleLR": {"max_lr": 0.1},
    "SequentialLR": {"milestones": [1], "schedulers": [{"name": "constant"}, {"name": "cosine"}]},
    "StepLR": {"step_size": 1},
}


def usable(registry):
    return [entry.name for entry in registry.entries() if entry.unavailable is None]


@pytest.mark.parametrize("name", usable(OPTIMIZERS))
def test_every_optimizer_builds_and_steps(tmp_path, name):
    config = small_config(
        optimizer={"name": name, **OPTIMIZER_ARGUMENTS.get(name, {})},
        model=OPTIMIZER_MODELS.get(name, {"name": "mlp", "hidden": [8]}),
    )
    run_dir = train_ok(write_config(tmp_path, config), tmp_path / "runs")
    losses = column(read_csv(run_dir / "metrics.csv"), "loss")
    assert len(losses) == 12


@pytest.mark.parametrize("name", usable(SCHEDULERS))
def test_every_scheduler_builds_and_steps(tmp_path, name):
    config = small_config(scheduler={"name": name, **SCHEDULER_ARGUMENTS.get(name, {})})
    run_dir = train_ok(write_config(tmp_path, config), tmp_path / "runs")
    rates = column(read_csv(run_dir / "metrics.csv"), "lr")
    assert len(rates) == 12
    if name != "ReduceLROnPlateau":  # which follows the loss, and may rightly never change the rate
        assert len(set(rates)) > 1


@pytest.mark.parametrize("name", ["LambdaLR", "MultiplicativeLR", "SparseAdam"])
def test_entries_a_config_cannot_use_say_why(tmp_path, name):
    section = "optimizer" if name == "SparseAdam" else "scheduler"
    message = config_error(invoke("check", write_config(tmp_path, small_config(**{section: {"name": name}}))))
    assert "cannot be used from a config" in message


@pytest.fixture
def unit_targets(tmp_path):
    """Real-valued targets in [0, 1], three per sample: what regression and BCE-style losses compare."""
    import torch

    generator = torch.Generator().manual_seed(0)
    path = tmp_path / "unit.pt"
    torch.save(
        {"x": torch.randn(64, 8, generator=generator), "y": torch.rand(64, 3, generator=generator)}, path
    )
    return path


@pytest.mark.parametrize("name", usable(LOSSES))
def test_every_loss_resolves_or_names_the_mismatch(tmp_path, unit_targets, name):
    labels = invoke("check", write_config(tmp_path, small_config(loss=name)))
    real = invoke(
        "check",
        write_config(
            tmp_path,
            small_config(loss=name, data={"name": "tensors", "path": str(unit_targets), "batch_size": 16}),
            "b.yaml",
        ),
    )
    for result in (labels, real):
        assert result.exit_code in (0, 2), result.output
        assert_clean_exit(result, result.exit_code)
        if result.exit_code == 2 and name == "from_model":  # mlp computes no loss of its own
            assert "loss: from_model calls model(inputs, targets)" in result.stderr, result.stderr
        elif result.exit_code == 2:  # a loss for other targets: said before anything is built
            assert result.stderr.startswith(f"error: loss: {name} cannot compare"), result.stderr


@pytest.mark.parametrize(
    ("name", "targets"),
    [
        ("cross_entropy", "labels"),
        ("nll", "labels"),
        ("multi_margin", "labels"),
        ("mse", "real"),
        ("l1", "real"),
        ("smooth_l1", "real"),
        ("huber", "real"),
        ("bce_with_logits", "real"),
        ("kl_div", "real"),
    ],
)
def test_common_losses_train_on_their_targets(tmp_path, unit_targets, name, targets):
    data = (
        {"name": "tensors", "path": str(unit_targets), "batch_size": 16}
        if targets == "real"
        else small_config()["data"]
    )
    run_dir = train_ok(write_config(tmp_path, small_config(loss=name, data=data)), tmp_path / "runs")
    assert len(read_csv(run_dir / "metrics.csv")) == 12


@pytest.mark.parametrize("spelling", ["step", "step_lr", "StepLR", "steplr", "Step-LR"])
def test_scheduler_names_ignore_case_underscores_and_a_trailing_lr(tmp_path, spelling):
    config = small_config(scheduler={"name": spelling, "step_size": 1})
    result = invoke("check", write_config(tmp_path, config), "--resolved")
    assert_clean_exit(result, 0)
    assert yaml.safe_load(result.stdout.split("ok:")[0])["scheduler"]["name"] == "StepLR"


def test_momentum_is_sgd_with_momentum_unless_the_config_says_otherwise(tmp_path):
    default = invoke("check", write_config(tmp_path, small_config(optimizer="momentum")), "--resolved")
    explicit = invoke(
        "check",
        write_config(tmp_path, small_config(optimizer={"name": "momentum", "momentum": 0.5}), "b.yaml"),
        "--resolved",
    )
    assert "momentum: 0.9" in default.stdout
    assert "momentum: 0.5" in explicit.stdout


def test_run_length_arguments_are_filled_in_and_recorded(tmp_path):
    config = small_config(
        scheduler={"name": "one_cycle", "max_lr": 0.1}, train={"epochs": 5}
    )  # 64 samples / 16 per batch = 4 steps per epoch
    run_dir = train_ok(write_config(tmp_path, config), tmp_path / "runs")
    recorded = yaml.safe_load((run_dir / "config.yaml").read_text())["scheduler"]
    assert (recorded["total_steps"], recorded["interval"]) == (20, "step")

    cosine = small_config(scheduler={"name": "cosine"}, train={"epochs": 5})
    run_dir = train_ok(write_config(tmp_path, cosine, "cosine.yaml"), tmp_path / "cosine")
    recorded = yaml.safe_load((run_dir / "config.yaml").read_text())["scheduler"]
    assert (recorded["T_max"], recorded["interval"]) == (5, "epoch")


def test_warmup_then_cosine_as_plain_yaml(tmp_path):
    scheduler = {
        "name": "sequential",
        "interval": "step",
        "milestones": [4],
        "schedulers": [{"name": "linear", "start_factor": 0.25, "total_iters": 4}, {"name": "cosine"}],
    }
    run_dir = train_ok(write_config(tmp_path, small_config(scheduler=scheduler)), tmp_path / "runs")
    rates = column(read_csv(run_dir / "metrics.csv"), "lr")
    assert rates[0] == pytest.approx(0.0025) and rates[4] == pytest.approx(0.01)  # warmed up at the milestone
    assert rates[4:] == sorted(rates[4:], reverse=True)  # then decays
    recorded = yaml.safe_load((run_dir / "config.yaml").read_text())["scheduler"]
    assert recorded["schedulers"][1]["T_max"] == 8  # the 12-step run's last 8 steps


def test_set_name_starts_the_new_class_from_its_defaults_and_says_what_was_not_carried(tmp_path):
    """AdamW's decoupled weight_decay is L2 in SGD: nothing of the old class follows a switch, and the
    note names what stayed behind, so no lr changes in silence."""
    config = small_config(optimizer={"name": "adamw", "lr": 0.01, "weight_decay": 0.1})
    path = write_config(tmp_path, config)
    result = invoke("check", path, "--set", "optimizer.name=sgd", "--resolved")
    assert_clean_exit(result, 0)
    recorded = yaml.safe_load(result.stdout.rsplit("ok:", 1)[0])["optimizer"]
    sgd_defaults = inspect.signature(torch.optim.SGD).parameters
    assert recorded["name"] == "SGD" and "betas" not in recorded
    assert recorded["lr"] == sgd_defaults["lr"].default and recorded["weight_decay"] == 0
    assert (
        "note: optimizer: switching to SGD starts from its own defaults; the replaced class's lr=0.01, "
        "weight_decay=0.1 not carried over" in result.stderr
    )
    result = invoke("check", path, "--set", "optimizer.name=sgd", "--set", "optimizer.lr=0.2", "--resolved")
    assert "lr: 0.2" in result.stdout


def test_a_compare_arm_that_switches_the_scheduler_keeps_what_the_new_one_takes(tmp_path):
    base = small_config(scheduler={"name": "step", "step_size": 2, "gamma": 0.5}, train={"epochs": 4})
    write_config(tmp_path, base, "base.yaml")
    runs = {"step": {}, "exponential": {"scheduler": {"name": "exponential"}}}
    path = write_config(tmp_path, {"base": "base.yaml", "seeds": 1, "runs": runs}, "c.yaml")
    result = invoke("check", path, "--resolved")
    assert_clean_exit(result, 0)
    resolved = yaml.safe_load(result.stdout.rsplit("ok:", 1)[0])
    assert (
        resolved["exponential"]["scheduler"]["gamma"] == 0.5
        and "step_size" not in resolved["exponential"]["scheduler"]
    )
    assert (
        "arm 'exponential': scheduler: switching to ExponentialLR kept gamma and dropped step_size"
        in result.stderr
    )


def test_import_paths_load_classes_outside_the_registries(tmp_path):
    (tmp_path / "nets.py").write_text(
        "import torch\n\n"
        "class TwoLayer(torch.nn.Sequential):\n"
        "    def __init__(self, in_features, out_features, width=16):\n"
        "        super().__init__(torch.nn.Linear(in_features, width), torch.nn.Tanh(),\n"
        "                         torch.nn.Linear(width, out_features))\n"
    )
    sub = tmp_path / "configs"
    sub.mkdir()
    config = small_config(
        model={"name": "../nets.py:TwoLayer", "width": 4}, optimizer={"name": "torch.optim:Adam"}
    )
    run_dir = train_ok(write_config(sub, config), tmp_path / "runs")
    recorded = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert recorded["model"]["name"] == f"{tmp_path / 'nets.py'}:TwoLayer"  # usable from the run directory
    assert recorded["model"]["in_features"] == 8 and recorded["model"]["out_features"] == 3


def test_list_shows_every_name_with_parameters(tmp_path):
    result = invoke("list", "optimizers")
    assert_clean_exit(result, 0)
    for entry in OPTIMIZERS.entries():
        assert entry.name in result.stdout
    assert "betas" in result.stdout
    schedulers = invoke("list", "schedulers")
    assert "step_size" in schedulers.stdout and "unavailable" in schedulers.stdout
    everything = invoke("list")
    for kind in ("optimizers", "schedulers", "models", "datasets", "losses"):
        assert kind in everything.stdout
    assert "choose from" in config_error(invoke("list", "optimisers"))


def test_loss_class_weights_are_lists_that_become_tensors(tmp_path):
    # Today: "CrossEntropyLoss expects null for 'weight'".
    weights = [1.0, 2.0, 0.5, 1.0]
    config = small_config(
        loss={"name": "cross_entropy", "weight": weights},
        data={"name": "teacher", "samples": 64, "features": 4, "classes": 4, "batch_size": 16},
    )
    path = write_config(tmp_path, config)
    from optcli.config.loading import load_config
    from optcli.config.resolve import resolve_config
    from optcli.train.session import build_session

    session = build_session(resolve_config(load_config(path)))
    assert torch.equal(session.loss_function.weight, torch.tensor(weights))
    run_dir = train_ok(path, tmp_path / "runs")
    assert yaml.safe_load((run_dir / "config.yaml").read_text())["loss"]["weight"] == weights
    message = config_error(
        invoke(
            "check",
            write_config(
                tmp_path, {**config, "loss": {"name": "cross_entropy", "weight": "heavy"}}, "b.yaml"
            ),
        )
    )
    assert "CrossEntropyLoss expects a list of numbers or null for 'weight'" in message


def test_binary_labels_train_with_bce_with_logits_and_report_accuracy(tmp_path):
    # Today: integer 0/1 labels were refused ("cannot compare the model's output ... with class labels").
    data = {
        "name": "teacher",
        "samples": 256,
        "features": 6,
        "classes": 2,
        "batch_size": 32,
        "val_fraction": 0.25,
    }
    config = small_config(
        data=data, loss="bce_with_logits", optimizer={"name": "adam", "lr": 0.01}, train={"epochs": 8}
    )
    run_dir = train_ok(write_config(tmp_path, config), tmp_path / "runs")
    assert yaml.safe_load((run_dir / "config.yaml").read_text())["model"]["out_features"] == 1  # one logit
    summary = read_summary(run_dir)
    assert summary["status"] == "completed" and 0.7 < summary["final_val_accuracy"] <= 1.0
    assert summary["final_loss"] < 0.6  # it learned (a coin flip's loss is 0.69)
