"""A user's own Dataset from a file next to the config, through a real DataLoader: the same losses
with and without worker processes and in a hand-written loop over the same DataLoader, resume after a
kill or mid-epoch interrupt, and every mistake a config error before training."""

from __future__ import annotations

import importlib.util
import json
import os
import random
import signal
from pathlib import Path
from typing import Any

import numpy
import pytest
import torch
import yaml

from optcli.data.loader import make_loader
from optcli.train.checkpoints import load_checkpoint
from tests.conftest import (
    assert_clean_exit,
    column,
    config_error,
    invoke,
    read_csv,
    read_summary,
    rows_without_times,
    start_optcli,
    train_ok,
    wait_for_rows,
    write_config,
)

# A Dataset whose samples change at every read (noise, a random flip: augmentations), and a model
# with dropout, so that the data's randomness and the training's must both be seeded apart.
USER_CODE = """
import random

import numpy
import torch
from torch.utils.data import Dataset


class Noisy(Dataset):
    def __init__(self, samples: int = 120, features: int = 6, noise: float = 0.1):
        generator = torch.Generator().manual_seed(0)
        self.x = torch.randn(samples, features, generator=generator)
        self.y = (self.x[:, 0] + self.x[:, 1] > 0).long()
        self.classes = ["negative", "positive"]
        self.noise = noise

    def __len__(self):
        return len(self.x)

    def __getitem__(self, index):
        sample = self.x[index] + self.noise * torch.randn(self.x.shape[1])
        if random.random() < 0.5:  # each of the three generators a Dataset may use
            sample = sample * float(numpy.random.uniform(0.9, 1.1))
        return sample, self.y[index]


def make_datasets(samples: int = 120, with_val: bool = True):
    parts = {"train": Noisy(samples)}
    if with_val:
        parts["val"] = Noisy(40, noise=0.0)
    return parts


class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.layers = torch.nn.Sequential(
            torch.nn.Linear(6, 16), torch.nn.ReLU(), torch.nn.Dropout(0.2), torch.nn.Linear(16, 2)
        )

    def forward(self, x):
        return self.layers(x)
"""

SEED, EPOCHS, BATCH = 5, 4, 16


def user_config(directory: Path, **data: Any) -> Path:
    (directory / "userdata.py").write_text(USER_CODE)
    config = {
        "seed": SEED,
        "device": "cpu",
        "model": {"name": "userdata.py:Net"},
        "data": {"name": "userdata.py:Noisy", "batch_size": BATCH, **data},
        "optimizer": {"name": "sgd", "lr": 0.1, "momentum": 0.9},
        "train": {"epochs": EPOCHS},
    }
    return write_config(directory, config)


def import_user_code(directory: Path) -> Any:
    spec = importlib.util.spec_from_file_location("userdata_by_hand", directory / "userdata.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def hand_written_losses(directory: Path, num_workers: int) -> list[float]:
    """docs/data.md's recipe: seed as optcli does, build the model, iterate optcli's DataLoader."""
    user = import_user_code(directory)
    random.seed(SEED)
    numpy.random.seed(SEED)
    torch.manual_seed(SEED)
    model = user.Net()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    loader = make_loader(user.Noisy(), BATCH, seed=SEED, num_workers=num_workers)
    losses = []
    for epoch in range(1, EPOCHS + 1):
        loader.batch_sampler.set_epoch(epoch)
        for inputs, targets in loader:
            optimizer.zero_grad()
            loss = torch.nn.functional.cross_entropy(model(inputs), targets)
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
    return losses


def test_workers_or_not_and_a_hand_written_loop_give_the_same_losses(tmp_path):
    without = train_ok(user_config(tmp_path, num_workers=0), tmp_path / "runs0")
    with_workers = train_ok(
        user_config(tmp_path, num_workers=2, persistent_workers=True, prefetch_factor=3), tmp_path / "runs2"
    )
    losses = column(read_csv(without / "metrics.csv"), "loss")
    assert len(losses) == EPOCHS * 8  # 120 samples in batches of 16
    assert column(read_csv(with_workers / "metrics.csv"), "loss") == losses
    assert hand_written_losses(tmp_path, num_workers=2) == losses
    # The augmentation is real: the same model on un-noised data would not give these losses.
    assert len(set(losses)) == len(losses)


def test_a_run_repeats_bit_for_bit_and_another_seed_differs(tmp_path):
    config = user_config(tmp_path, num_workers=2)
    first = column(read_csv(train_ok(config, tmp_path / "a") / "metrics.csv"), "loss")
    second = column(read_csv(train_ok(config, tmp_path / "b") / "metrics.csv"), "loss")
    other = column(read_csv(train_ok(config, tmp_path / "c", "--set", "seed=6") / "metrics.csv"), "loss")
    assert first == second
    assert other != first


def test_a_mapping_gives_validation_data_and_a_fraction_splits_a_single_dataset(tmp_path):
    config = user_config(tmp_path, name="userdata.py:make_datasets")
    run = train_ok(config, tmp_path / "runs")
    epochs = read_csv(run / "epochs.csv")
    assert [row["epoch"] for row in epochs] == ["1", "2", "3", "4"]
    assert all(0 <= float(row["val_accuracy"]) <= 1 for row in epochs)
    assert json.loads((run / "data.json").read_text())["val_samples"] == 40
    split = train_ok(
        user_config(tmp_path, name="userdata.py:make_datasets", with_val=False, val_fraction=0.25),
        tmp_path / "split",
    )
    assert json.loads((split / "data.json").read_text())["val_samples"] == 30
    assert len(read_csv(split / "metrics.csv")) == EPOCHS * 6  # 90 training samples left


def long_config(directory: Path) -> Path:
    # Slow enough steps (a wide model) that a signal lands mid-epoch, many epochs to land in.
    path = user_config(directory, name="userdata.py:make_datasets", num_workers=2, samples=400)
    config = yaml.safe_load(path.read_text())
    config["train"] = {"epochs": 16, "checkpoint_every": 1}  # 400 steps
    return write_config(directory, config)


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> tuple[Path, Path]:
    directory = tmp_path_factory.mktemp("reference")
    config = long_config(directory)
    return config, train_ok(config, directory / "runs")


def assert_same_run(resumed: Path, reference: Path) -> None:
    for name in ("metrics.csv", "epochs.csv"):
        keep = ("step", "epoch", "loss", "lr", "train_loss", "val_loss", "val_accuracy")
        rows = [{k: v for k, v in row.items() if k in keep} for row in read_csv(resumed / name)]
        expected = [{k: v for k, v in row.items() if k in keep} for row in read_csv(reference / name)]
        assert rows == expected, name
    final = load_checkpoint(resumed / "checkpoints" / "last.pt")["model"]
    expected_weights = load_checkpoint(reference / "checkpoints" / "last.pt")["model"]
    assert all(torch.equal(final[key], expected_weights[key]) for key in expected_weights)
    assert read_summary(resumed)["status"] == "completed"


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGKILL, signal.SIGINT])
def test_killed_or_interrupted_mid_epoch_with_workers_then_resumed_equals_the_uninterrupted_run(
    reference, tmp_path, signum
):
    config, reference_dir = reference
    process = start_optcli("train", config, "--out", tmp_path / "runs", "--quiet")
    run_dir = wait_for_rows(tmp_path / "runs", 100 + (signum == signal.SIGKILL) * 111, process)
    os.killpg(process.pid, signum)  # the whole group: the main process and its DataLoader workers
    process.communicate(timeout=60)
    assert process.returncode in (-signal.SIGKILL, 130), process.returncode
    if signum == signal.SIGINT:  # it stopped after a step inside an epoch: the sampler's position is kept
        checkpoint = load_checkpoint(run_dir / "checkpoints" / "last.pt")
        assert 0 < checkpoint["loop"]["batches_done"] < 25
    result = invoke("resume", run_dir, "--quiet")
    assert_clean_exit(result, 0)
    assert_same_run(run_dir, reference_dir)


@pytest.mark.parametrize(
    ("code", "data", "expected"),
    [
        ("", {"name": "userdata.py:missing"}, "missing"),
        (
            "def make(): return [1, 2, 3]\n",
            {"name": "userdata.py:make"},
            "not an (input, target) pair or a dict",
        ),
        ("def make(): return 42\n", {"name": "userdata.py:make"}, "not a Dataset"),
        (
            "def make(): raise OSError('no such folder: images')\n",
            {"name": "userdata.py:make"},
            "no such folder",
        ),
        (
            "import torch\nclass Stream(torch.utils.data.IterableDataset):\n    def __iter__(self): yield 1\n"
            "def make(): return Stream()\n",
            {"name": "userdata.py:make"},
            "IterableDataset",
        ),
        (
            "import torch\ndef make(): return [(torch.zeros(3), 0), (torch.zeros(4), 1)]\n",
            {"name": "userdata.py:make"},
            "cannot be collated",
        ),
        (
            "import torch\ndef make(): return {'train': [(torch.zeros(3), 0)] * 8, 'tset': []}\n",
            {"name": "userdata.py:make"},
            "'tset'",
        ),
        (
            "import torch\ndef make(): return [(torch.zeros(5), 0)] * 8\n",
            {"name": "userdata.py:make"},
            "cannot take the data's inputs (shape [8, 5]",
        ),
        (
            "import numpy\ndef make(): return [(numpy.zeros(6), 0), (numpy.ones(6), 1)] * 4\n",
            {"name": "userdata.py:make"},
            "the inputs are float64 but the model's weights are float32",
        ),
        (
            "",
            {"val": {"samples": 40}},
            "data.val: a Dataset callable gives its validation and test data itself",
        ),
        ("", {"prefetch_factor": 2}, "data.prefetch_factor: it needs worker processes"),
        ("", {"normalize": True}, "data.normalize"),
        ("", {"samples": "many"}, "data.samples"),
    ],
)
def test_every_mistake_is_a_config_error_before_training(tmp_path, code, data, expected):
    config = user_config(tmp_path, **data)
    if code:
        with (tmp_path / "userdata.py").open("a") as stream:
            stream.write(code)
    for command in ("check", "train"):
        message = config_error(
            invoke(command, config, "--out", tmp_path / "runs")
            if command == "train"
            else invoke(command, config)
        )
        assert message.startswith("error: data") or message.startswith("error: model"), message
        assert expected in message, message
    assert not (tmp_path / "runs").exists()


def test_every_compare_arm_sees_the_same_batches_for_a_seed(tmp_path):
    user_config(tmp_path, num_workers=2)
    (tmp_path / "base.yaml").write_text((tmp_path / "config.yaml").read_text())
    arms = {"sgd": {}, "adam": {"optimizer": {"name": "adam", "lr": 0.01}}}
    compare = write_config(tmp_path, {"base": "base.yaml", "seeds": [0, 1], "runs": arms}, "compare.yaml")
    result = invoke("compare", compare, "--out", tmp_path / "out", "--set", "train.epochs=1")
    assert_clean_exit(result, 0)
    results = read_csv(next((tmp_path / "out").glob("compare-*/*/results.csv")))
    for seed in ("0", "1"):
        hashes = {(row["init_hash"], row["data_hash"]) for row in results if row["seed"] == seed}
        assert len(hashes) == 1, hashes  # the same weights and the same batches in every arm
    assert len({row["data_hash"] for row in results}) == 2  # and another order for another seed


@pytest.mark.slow  # starts compare's worker processes
def test_compare_workers_run_dataloader_workers_and_give_the_same_results(tmp_path):
    # Found by hand: compare's workers were daemonic, and a daemonic process may not start the
    # DataLoader's workers: every run failed with --jobs 2 and data.num_workers: 2.
    user_config(tmp_path, num_workers=2)
    (tmp_path / "base.yaml").write_text((tmp_path / "config.yaml").read_text())
    arms = {"sgd": {}, "adam": {"optimizer": {"name": "adam", "lr": 0.01}}}
    compare = write_config(tmp_path, {"base": "base.yaml", "seeds": [0, 1], "runs": arms}, "compare.yaml")
    results = {}
    for jobs in ("1", "2"):
        out = tmp_path / f"jobs{jobs}"
        result = invoke(
            "compare", compare, "--out", out, "--set", "train.epochs=2", "--jobs", jobs, "--quiet"
        )
        assert_clean_exit(result, 0)
        results[jobs] = rows_without_times(next(out.glob("compare-*/*/results.csv")))
    assert {row["status"] for row in results["2"]} == {"ok"}
    assert results["2"] == results["1"]


def test_real_valued_targets_one_number_a_sample_and_a_test_set_from_the_mapping(tmp_path):
    (tmp_path / "regression.py").write_text(
        "import numpy, torch\n"
        "class Sums(torch.utils.data.Dataset):\n"
        "    def __init__(self, samples, seed):\n"
        "        self.x = numpy.random.default_rng(seed).normal(size=(samples, 3)).astype(numpy.float32)\n"
        "    def __len__(self):\n        return len(self.x)\n"
        "    def __getitem__(self, index):\n        return self.x[index], float(self.x[index].sum())\n"
        "def make(samples: int = 64):\n"
        "    return {'train': Sums(samples, 0), 'val': Sums(16, 1), 'test': Sums(16, 2)}\n"
    )
    config = {
        "device": "cpu",
        "model": {"name": "linear"},
        "data": {"name": "regression.py:make", "batch_size": 16},
        "optimizer": {"name": "sgd", "lr": 0.1},
        "train": {"epochs": 30},
    }
    run = train_ok(write_config(tmp_path, config), tmp_path / "runs")
    summary = read_summary(run)
    # A number per sample is a column, as the model's one output: the sum is learnt, nearly exactly.
    assert summary["final_val_r2"] > 0.99 and summary["test_r2"] > 0.99
    assert summary["test_rmse"] < 0.1 and summary["test_on"] == "best"
