"""The training loop against hand-written PyTorch doing the same work, step for step."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from optcli.seeds import DATA_ORDER, derive_seed
from optcli.train.checkpoints import load_checkpoint
from tests.conftest import (
    assert_clean_exit,
    column,
    guide_config,
    invoke,
    one_infinite_batch,
    read_csv,
    read_summary,
    run_dirs,
    train_ok,
    write_config,
)


def simple_nn() -> nn.Module:
    """The guide's SimpleNN."""
    return nn.Sequential(nn.Linear(784, 128), nn.ReLU(), nn.Linear(128, 10))


@dataclass
class Steps:
    """What a run did, step by step, and where it ended: every step's loss, learning rate and gradient
    norm (before clipping), and the final weights in order."""

    losses: list[float]
    rates: list[float]
    norms: list[float]
    weights: list[torch.Tensor]

    def assert_equal(self, other: Steps) -> None:
        """Bit for bit, not approximately."""
        assert self.losses == other.losses
        assert self.rates == other.rates
        assert self.norms == other.norms
        assert len(self.weights) == len(other.weights)
        assert all(torch.equal(a, b) for a, b in zip(self.weights, other.weights, strict=True))


def plain_loop(
    data_path: Path,
    make_optimizer: Callable[[Any], torch.optim.Optimizer],
    *,
    epochs: int,
    batch_size: int = 64,
    make_scheduler: Callable[[torch.optim.Optimizer], Any] | None = None,
    scheduler_per_step: bool = False,
    clip: Callable[[Any], Any] | None = None,
    seed: int = 0,
    shuffle: bool = False,
) -> Steps:
    """The guide's loop, written by hand (shuffling, when asked, with a generator of its own seeded as
    the docs of data/batches.py say)."""
    data = torch.load(data_path)
    inputs, labels = data["x"], data["y"]
    torch.manual_seed(seed)
    model = simple_nn()
    criterion = nn.CrossEntropyLoss()
    optimizer = make_optimizer(model.parameters())
    scheduler = make_scheduler(optimizer) if make_scheduler else None
    order_generator = torch.Generator().manual_seed(derive_seed(seed, DATA_ORDER))
    steps = Steps([], [], [], [])
    for _epoch in range(epochs):
        order = (
            torch.randperm(len(inputs), generator=order_generator) if shuffle else torch.arange(len(inputs))
        )
        for start in range(0, len(inputs), batch_size):
            batch = order[start : start + batch_size]
            steps.rates.append(optimizer.param_groups[0]["lr"])
            optimizer.zero_grad()
            loss = criterion(model(inputs[batch]), labels[batch])
            loss.backward()
            norm = nn.utils.get_total_norm([p.grad for p in model.parameters()])
            if clip:
                clip(model.parameters())
            optimizer.step()
            if scheduler and scheduler_per_step:
                scheduler.step()
            steps.losses.append(loss.item())
            steps.norms.append(norm.item())
        if scheduler and not scheduler_per_step:
            scheduler.step()
    steps.weights = list(model.state_dict().values())
    return steps


def optcli_steps(tmp_path: Path, tensor_file: Path, shuffle: bool = False, **sections: Any) -> Steps:
    config = guide_config(
        data={"name": "tensors", "path": str(tensor_file), "batch_size": 64, "shuffle": shuffle}
    )
    config.update(sections)
    run_dir = train_ok(write_config(tmp_path, config), tmp_path / "runs")
    rows = read_csv(run_dir / "metrics.csv")
    weights = list(load_checkpoint(run_dir / "checkpoints" / "last.pt")["model"].values())
    return Steps(column(rows, "loss"), column(rows, "lr"), column(rows, "grad_norm"), weights)


GUIDE_OPTIMIZERS = [
    ({"name": "sgd", "lr": 0.01}, lambda p: torch.optim.SGD(p, lr=0.01)),
    ({"name": "momentum", "lr": 0.01}, lambda p: torch.optim.SGD(p, lr=0.01, momentum=0.9)),
    ({"name": "adam", "lr": 0.001}, lambda p: torch.optim.Adam(p, lr=0.001)),
    ({"name": "rmsprop", "lr": 0.01}, lambda p: torch.optim.RMSprop(p, lr=0.01)),
    ({"name": "adagrad", "lr": 0.01}, lambda p: torch.optim.Adagrad(p, lr=0.01)),
]


@pytest.mark.parametrize(("optimizer", "make_optimizer"), GUIDE_OPTIMIZERS, ids=lambda v: str(v)[:20])
def test_guide_optimizers_equal_the_plain_loop(tmp_path, tensor_file, optimizer, make_optimizer):
    steps = optcli_steps(tmp_path, tensor_file, optimizer=optimizer, train={"epochs": 3})
    steps.assert_equal(plain_loop(tensor_file, make_optimizer, epochs=3))


GUIDE_SCHEDULERS = [
    (
        {"name": "step", "step_size": 2, "gamma": 0.1},
        lambda o: torch.optim.lr_scheduler.StepLR(o, step_size=2, gamma=0.1),
    ),
    (
        {"name": "ExponentialLR", "gamma": 0.9},
        lambda o: torch.optim.lr_scheduler.ExponentialLR(o, gamma=0.9),
    ),
    (
        {"name": "reduce_lr_on_plateau", "mode": "min", "patience": 0, "factor": 0.5},
        None,  # stepped with the epoch's mean loss: checked in its own test below
    ),
]


@pytest.mark.parametrize(
    ("scheduler", "make_scheduler"), GUIDE_SCHEDULERS[:2], ids=["step_lr", "exponential"]
)
def test_guide_schedulers_equal_the_plain_loop(tmp_path, tensor_file, scheduler, make_scheduler):
    steps = optcli_steps(tmp_path, tensor_file, scheduler=scheduler, train={"epochs": 4})
    expected = plain_loop(
        tensor_file, lambda p: torch.optim.Adam(p, lr=1e-3), epochs=4, make_scheduler=make_scheduler
    )
    steps.assert_equal(expected)
    assert len(set(steps.rates)) > 1  # the schedule really changed the rate


def test_complete_example_with_clipping_equals_the_plain_loop(tmp_path, tensor_file):
    """The guide's complete example (Adam 0.001, StepLR 5/0.1) plus clip_grad_norm_(max_norm=1.0)."""
    steps = optcli_steps(
        tmp_path,
        tensor_file,
        scheduler={"name": "StepLR", "step_size": 5, "gamma": 0.1},
        clip={"max_norm": 1.0},
        train={"epochs": 6},
    )
    expected = plain_loop(
        tensor_file,
        lambda p: torch.optim.Adam(p, lr=0.001),
        epochs=6,
        make_scheduler=lambda o: torch.optim.lr_scheduler.StepLR(o, step_size=5, gamma=0.1),
        clip=lambda p: nn.utils.clip_grad_norm_(p, max_norm=1.0),
    )
    steps.assert_equal(expected)


@pytest.mark.parametrize("norm_type", [1.0, 3.0, float("inf")], ids=["l1", "l3", "max"])
def test_clipping_by_another_norm_equals_the_plain_loop(tmp_path, tensor_file, norm_type):
    """clip.norm_type: the norm that is clipped, and the one logged (the clipped norm's kind)."""
    steps = optcli_steps(
        tmp_path, tensor_file, clip={"max_norm": 0.5, "norm_type": norm_type}, train={"epochs": 2}
    )
    clipped_norms: list[float] = []
    expected = plain_loop(
        tensor_file,
        lambda p: torch.optim.Adam(p, lr=0.001),
        epochs=2,
        clip=lambda p: clipped_norms.append(nn.utils.clip_grad_norm_(p, 0.5, norm_type).item()),
    )
    expected.norms = clipped_norms  # optcli logs the norm it clipped by
    steps.assert_equal(expected)


def test_a_shuffled_run_equals_the_plain_loop_drawing_the_same_order(tmp_path, tensor_file):
    steps = optcli_steps(tmp_path, tensor_file, shuffle=True, train={"epochs": 3})
    expected = plain_loop(tensor_file, lambda p: torch.optim.Adam(p, lr=0.001), epochs=3, shuffle=True)
    steps.assert_equal(expected)
    in_order = plain_loop(tensor_file, lambda p: torch.optim.Adam(p, lr=0.001), epochs=3)
    assert steps.losses[1:] != in_order.losses[1:]  # the order really changed


def test_clip_by_value_equals_the_plain_loop(tmp_path, tensor_file):
    steps = optcli_steps(
        tmp_path,
        tensor_file,
        optimizer={"name": "sgd", "lr": 0.1},
        clip={"value": 0.001},
        train={"epochs": 2},
    )
    expected = plain_loop(
        tensor_file,
        lambda p: torch.optim.SGD(p, lr=0.1),
        epochs=2,
        clip=lambda p: nn.utils.clip_grad_value_(p, 0.001),
    )
    steps.assert_equal(expected)


def test_step_interval_steps_the_scheduler_after_every_batch(tmp_path, tensor_file):
    scheduler = {"name": "step", "step_size": 2, "gamma": 0.5, "interval": "step"}
    steps = optcli_steps(tmp_path, tensor_file, scheduler=scheduler, train={"epochs": 2})
    expected = plain_loop(
        tensor_file,
        lambda p: torch.optim.Adam(p, lr=1e-3),
        epochs=2,
        make_scheduler=lambda o: torch.optim.lr_scheduler.StepLR(o, step_size=2, gamma=0.5),
        scheduler_per_step=True,
    )
    steps.assert_equal(expected)
    assert steps.rates[:5] == [1e-3, 1e-3, 5e-4, 5e-4, 2.5e-4]


def test_lr_column_follows_an_epoch_scheduler(tmp_path):
    config = guide_config(scheduler={"name": "step_lr", "step_size": 1, "gamma": 0.5}, train={"epochs": 3})
    run_dir = train_ok(write_config(tmp_path, config), tmp_path / "runs")
    rows = read_csv(run_dir / "metrics.csv")
    by_epoch = {int(row["epoch"]): float(row["lr"]) for row in rows}
    assert by_epoch == {1: 1e-3, 2: 5e-4, 3: 2.5e-4}
    assert column(read_csv(run_dir / "epochs.csv"), "lr") == [1e-3, 5e-4, 2.5e-4]


def test_lbfgs_equals_the_plain_closure_loop(tmp_path, tensor_file):
    steps = optcli_steps(
        tmp_path, tensor_file, optimizer={"name": "lbfgs", "lr": 0.5, "max_iter": 4}, train={"epochs": 2}
    )
    losses = steps.losses
    data = torch.load(tensor_file)
    torch.manual_seed(0)
    model = simple_nn()
    optimizer = torch.optim.LBFGS(model.parameters(), lr=0.5, max_iter=4)
    criterion = nn.CrossEntropyLoss()
    expected = []
    for _epoch in range(2):
        for start in range(0, 256, 64):
            batch = data["x"][start : start + 64], data["y"][start : start + 64]

            def closure(batch=batch):
                optimizer.zero_grad()
                loss = criterion(model(batch[0]), batch[1])
                loss.backward()
                return loss

            expected.append(optimizer.step(closure).item())  # step returns the first evaluation's loss
    assert losses == expected
    assert losses[-1] < losses[0]
    assert all(torch.equal(a, b) for a, b in zip(steps.weights, model.state_dict().values(), strict=True))


def test_reduce_on_plateau_follows_the_epoch_train_loss(tmp_path, tensor_file):
    # A learning rate too small to move the loss: train_loss plateaus and the rate is cut every epoch.
    rates = optcli_steps(
        tmp_path,
        tensor_file,
        optimizer={"name": "sgd", "lr": 1e-4},
        scheduler={"name": "plateau", "patience": 0, "factor": 0.5, "threshold": 0.1},
        train={"epochs": 4},
    ).rates
    assert sorted(set(rates), reverse=True) == [1e-4, 5e-5, 2.5e-5]
    # And against torch's own scheduler stepped with the epoch's mean loss by hand.
    data = torch.load(tensor_file)
    torch.manual_seed(0)
    model = simple_nn()
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-4)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, patience=0, factor=0.5, threshold=0.1)
    expected_rates = []
    for _epoch in range(4):
        epoch_losses = []
        for start in range(0, 256, 64):
            expected_rates.append(optimizer.param_groups[0]["lr"])
            optimizer.zero_grad()
            loss = nn.functional.cross_entropy(
                model(data["x"][start : start + 64]), data["y"][start : start + 64]
            )
            loss.backward()
            optimizer.step()
            epoch_losses.append(loss.item())
        scheduler.step(sum(epoch_losses) / len(epoch_losses))
    assert rates == expected_rates


def test_seeded_runs_repeat_bit_for_bit(tmp_path):
    config = write_config(
        tmp_path, guide_config(scheduler={"name": "exponential", "gamma": 0.9}, clip={"max_norm": 0.5})
    )
    first = read_csv(train_ok(config, tmp_path / "a") / "metrics.csv")
    second = read_csv(train_ok(config, tmp_path / "b") / "metrics.csv")
    for key in ("step", "epoch", "loss", "lr", "grad_norm"):
        assert [row[key] for row in first] == [row[key] for row in second]


def test_another_seed_gives_another_run(tmp_path):
    config = write_config(tmp_path, guide_config())
    first = read_csv(train_ok(config, tmp_path / "a") / "metrics.csv")
    second = read_csv(train_ok(config, tmp_path / "b", "--set", "seed=1") / "metrics.csv")
    assert first[0]["loss"] != second[0]["loss"]


def test_shuffle_is_seeded_and_changes_the_order(tmp_path, tensor_file):
    data = {"name": "tensors", "path": str(tensor_file), "batch_size": 64}
    config = write_config(tmp_path, guide_config(data={**data, "shuffle": True}))
    shuffled = read_csv(train_ok(config, tmp_path / "a") / "metrics.csv")
    again = read_csv(train_ok(config, tmp_path / "b") / "metrics.csv")
    in_order = read_csv(train_ok(config, tmp_path / "c", "--set", "data.shuffle=false") / "metrics.csv")
    assert column(shuffled, "loss") == column(again, "loss")
    assert column(shuffled, "loss") != column(in_order, "loss")


def test_logged_grad_norm_is_the_norm_before_clipping(tmp_path, tensor_file):
    data = {"name": "tensors", "path": str(tensor_file), "batch_size": 64, "shuffle": False}
    plain = read_csv(
        train_ok(write_config(tmp_path, guide_config(data=data)), tmp_path / "a") / "metrics.csv"
    )
    config = write_config(tmp_path, guide_config(data=data, clip={"max_norm": 1e-3}), "clipped.yaml")
    clipped = read_csv(train_ok(config, tmp_path / "b") / "metrics.csv")
    assert float(clipped[0]["grad_norm"]) > 1e-3  # the norm the gradients had, not the clipped one
    assert clipped[0]["grad_norm"] == plain[0]["grad_norm"]  # the same first step, clipped or not
    assert column(clipped, "loss")[1:] != column(plain, "loss")[1:]  # clipping changed the updates


@pytest.mark.parametrize("dtypes", [(torch.float32,) * 3, (torch.float32, torch.float64, torch.float32)])
def test_the_logged_norm_is_torchs_total_norm_bit_for_bit(dtypes):
    from optcli.train.step import total_norm

    generator = torch.Generator().manual_seed(0)
    gradients = [torch.randn(7, 5, generator=generator).to(dtype) for dtype in dtypes]
    assert torch.equal(total_norm(gradients), nn.utils.get_total_norm(gradients))
    assert torch.equal(total_norm([]), nn.utils.get_total_norm([]))


def test_max_steps_and_log_every(tmp_path):
    config = write_config(tmp_path, guide_config(train={"epochs": 5, "log_every": 3}))
    run_dir = train_ok(config, tmp_path / "runs", "--max-steps", "10")
    assert [int(row["step"]) for row in read_csv(run_dir / "metrics.csv")] == [3, 6, 9]
    epochs = read_csv(run_dir / "epochs.csv")
    assert [(int(r["epoch"]), int(r["step"])) for r in epochs] == [(1, 4), (2, 8), (3, 10)]
    summary = read_summary(run_dir)
    assert (summary["steps"], summary["epochs"], summary["status"]) == (10, 3, "completed")


def test_epoch_train_loss_is_the_mean_of_its_steps(tmp_path):
    run_dir = train_ok(write_config(tmp_path, guide_config()), tmp_path / "runs")
    steps = read_csv(run_dir / "metrics.csv")
    for epoch in read_csv(run_dir / "epochs.csv"):
        losses = [float(row["loss"]) for row in steps if row["epoch"] == epoch["epoch"]]
        assert float(epoch["train_loss"]) == pytest.approx(sum(losses) / len(losses), rel=1e-12)


def test_a_non_finite_loss_stops_the_run_with_exit_1_and_keeps_the_rows(tmp_path):
    config = write_config(tmp_path, guide_config(optimizer={"name": "sgd", "lr": 1e6}, train={"epochs": 20}))
    result = invoke("train", config, "--out", tmp_path / "runs", "--quiet")
    assert_clean_exit(result, 1)
    assert "at step" in result.stderr
    run_dir = run_dirs(tmp_path / "runs")[0]
    rows = read_csv(run_dir / "metrics.csv")
    summary = read_summary(run_dir)
    assert summary["status"] == "failed"
    assert f"at step {rows[-1]['step']}" in summary["error"]
    assert rows[-1]["loss"] in ("nan", "inf", "-inf")
    assert all(row["loss"] not in ("nan", "inf") for row in rows[:-1])


@pytest.mark.parametrize("steps_per_sync", [1, 3, 50])
def test_rows_stay_in_step_order_when_a_skipped_step_waits_for_earlier_copies(tmp_path, steps_per_sync):
    # On an accelerator, steps wait on the device and are copied to the host several at a time; a
    # skipped step must not overtake the steps still waiting. Raising steps_per_sync runs that path here.
    from optcli.config.loading import load_config
    from optcli.config.resolve import resolve_config
    from optcli.train.loop import run_training
    from optcli.train.records import SkippedStep, StepRecord
    from optcli.train.session import build_session

    path = write_config(tmp_path, one_infinite_batch(tmp_path, on_nonfinite="skip"))
    spec = resolve_config(load_config(path))
    records = list(run_training(build_session(spec), steps_per_sync=steps_per_sync))
    steps = [record.step for record in records if isinstance(record, StepRecord)]
    assert steps == list(range(1, 9))
    # Each warning comes after its own row.
    for index, record in enumerate(records):
        if isinstance(record, SkippedStep):
            rows_before = [r.step for r in records[:index] if isinstance(r, StepRecord)]
            assert rows_before[-1] == record.step
    assert [r.step for r in records if isinstance(r, SkippedStep)] == [2, 6]


def test_a_skipped_step_does_not_advance_a_per_step_scheduler(tmp_path):
    config = write_config(tmp_path, one_infinite_batch(tmp_path, on_nonfinite="skip"))
    settings = ["--set", "scheduler={name: step, step_size: 1, gamma: 0.5, interval: step}"]
    run_dir = train_ok(config, tmp_path / "runs", *settings)
    rates = column(read_csv(run_dir / "metrics.csv"), "lr")
    # Steps 2 and 6 are skipped: the rate halves after every applied step only.
    expected = [0.01, 0.005, 0.005, 0.0025, 0.00125, 0.000625, 0.000625, 0.0003125]
    assert rates == pytest.approx(expected, rel=1e-12)


def test_optimizers_with_a_train_and_eval_mode_are_switched_around_evaluation(tmp_path):
    # Schedule-free optimizers must be in eval mode while the model is judged, in train mode otherwise.
    (tmp_path / "modal.py").write_text(
        "import torch\n"
        "class Modal(torch.optim.SGD):\n"
        "    log = []\n"
        "    def train(self):\n"
        "        Modal.log.append('train')\n"
        "    def eval(self):\n"
        "        Modal.log.append('eval')\n"
        "    def step(self, closure=None):\n"
        "        assert Modal.log[-1] == 'train', 'a step in eval mode'\n"
        "        return super().step(closure)\n"
    )
    data = {
        "name": "random",
        "samples": 64,
        "features": 8,
        "classes": 2,
        "batch_size": 16,
        "val_fraction": 0.25,
    }
    config = guide_config(data=data, optimizer={"name": "modal.py:Modal", "lr": 0.1}, train={"epochs": 2})
    run_dir = train_ok(write_config(tmp_path, config), tmp_path / "runs")
    assert read_summary(run_dir)["status"] == "completed"
    import sys

    log = next(
        module for name, module in sys.modules.items() if name.startswith("optcli_user_modal")
    ).Modal.log
    # Trained; at each epoch's end judged, then the judged weights taken for the checkpoint (the
    # dry run's stand-in trials, before the run, only train).
    assert log[-9:] == ["train", *["eval", "train"] * 4] and set(log[:-9]) == {"train"}


def test_a_divergence_suggests_clipping_only_to_a_config_that_does_not_clip(tmp_path):
    config = one_infinite_batch(tmp_path)
    result = invoke("train", write_config(tmp_path, config), "--out", tmp_path / "a", "--quiet")
    assert_clean_exit(result, 1)
    assert "the loss became inf at step 2" in result.stderr and "gradient clipping (clip:" in result.stderr
    clipped = write_config(tmp_path, {**config, "clip": {"max_norm": 1.0}}, "clipped.yaml")
    result = invoke("train", clipped, "--out", tmp_path / "b", "--quiet")
    assert_clean_exit(result, 1)
    assert (
        "the gradients are clipped already" in result.stderr
        and "gradient clipping (clip:" not in result.stderr
    )
