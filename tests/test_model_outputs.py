"""Models that return more than a tensor: `model.output` picks what the loss sees."""

from __future__ import annotations

import pytest

from tests.conftest import (
    SMALL_TEACHER,
    assert_clean_exit,
    config_error,
    guide_config,
    invoke,
    read_csv,
    read_summary,
    train_ok,
    write_config,
)

MODELS = """
import collections
import torch


class Net(torch.nn.Module):
    def __init__(self, in_features: int, out_features: int, returns: str = "tensor"):
        super().__init__()
        self.body = torch.nn.Sequential(torch.nn.Linear(in_features, 16), torch.nn.ReLU(), torch.nn.Linear(16, out_features))
        self.returns = returns

    def forward(self, inputs):
        logits = self.body(inputs)
        if self.returns == "tuple":
            return logits, logits.detach().norm()
        if self.returns == "dict":
            return {"logits": logits, "features": inputs}
        if self.returns == "object":
            return collections.namedtuple("Output", "logits hidden")(logits, None)
        return logits
"""


def config(tmp_path, returns: str, **model: object) -> dict:
    (tmp_path / "nets.py").write_text(MODELS)
    return guide_config(
        data=SMALL_TEACHER, model={"name": "nets.py:Net", "returns": returns, **model}, train={"epochs": 2}
    )


@pytest.mark.parametrize(("returns", "output"), [("tuple", 0), ("dict", "logits"), ("object", "logits")])
def test_model_output_picks_what_the_loss_sees(tmp_path, returns, output):
    picked = train_ok(write_config(tmp_path, config(tmp_path, returns, output=output)), tmp_path / "picked")
    plain = train_ok(write_config(tmp_path, config(tmp_path, "tensor"), "plain.yaml"), tmp_path / "plain")
    # The same weights and batches: the picked logits give the plain model's losses exactly.
    assert read_csv(picked / "metrics.csv")[0]["loss"] == read_csv(plain / "metrics.csv")[0]["loss"]
    assert read_summary(picked)["final_val_loss"] == read_summary(plain)["final_val_loss"]
    assert read_summary(picked)["final_val_accuracy"] is not None


@pytest.mark.parametrize(
    ("returns", "found"), [("dict", "keys ['logits', 'features']"), ("tuple", "items [0, 1]")]
)
def test_a_dict_or_tuple_output_without_model_output_is_a_config_error(tmp_path, returns, found):
    message = config_error(
        invoke("train", write_config(tmp_path, config(tmp_path, returns)), "--out", tmp_path / "runs")
    )
    assert found in message and "set model.output" in message
    assert not (tmp_path / "runs").exists()


def test_a_model_output_the_model_does_not_return(tmp_path):
    message = config_error(invoke("check", write_config(tmp_path, config(tmp_path, "dict", output="logit"))))
    assert "model.output: 'logit' is not in what the model returns (['logits', 'features'])" in message
    assert_clean_exit(
        invoke("check", write_config(tmp_path, config(tmp_path, "dict", output="logits"), "ok.yaml")), 0
    )


# A Hugging Face style model and data: dict samples with `labels`, a model that computes its own loss.
OWN_LOSS = """
import torch
from torch.utils.data import Dataset


class Tokens(Dataset):
    def __init__(self, samples: int = 96):
        generator = torch.Generator().manual_seed(1)
        self.ids = torch.randint(0, 20, (samples, 5), generator=generator)
        self.labels = (self.ids.sum(1) % 2).long()
        self.classes = ["even", "odd"]

    def __len__(self):
        return len(self.ids)

    def __getitem__(self, index):
        return {"input_ids": self.ids[index], "labels": self.labels[index]}


def pairs(samples: int = 96):
    tokens = Tokens(samples)
    return [(tokens.ids[i], tokens.labels[i]) for i in range(samples)]


class Classifier(torch.nn.Module):
    def __init__(self, returns: str = "dict"):
        super().__init__()
        self.embed = torch.nn.EmbeddingBag(20, 8)
        self.head = torch.nn.Linear(8, 2)
        self.returns = returns

    def forward(self, input_ids, labels=None):
        logits = self.head(self.embed(input_ids))
        loss = torch.nn.functional.cross_entropy(logits, labels) if labels is not None else None
        if self.returns == "tensor":
            return loss
        return {"loss": loss, "logits": logits}
"""


def own_loss_config(tmp_path, data: str = "Tokens", **model: object) -> dict:
    (tmp_path / "hf.py").write_text(OWN_LOSS)
    return {
        "seed": 2,
        "device": "cpu",
        "model": {"name": "hf.py:Classifier", **model},
        "data": {"name": f"hf.py:{data}", "batch_size": 16, "val_fraction": 0.25},
        "loss": "from_model",
        "optimizer": {"name": "adam", "lr": 0.01},
        "train": {"epochs": 3},
    }


def test_a_model_computing_its_own_loss_from_dict_batches_equals_a_loss_outside_it(tmp_path):
    """model(**batch) with the labels inside; the same run as cross_entropy on model.output: logits."""
    own = train_ok(write_config(tmp_path, own_loss_config(tmp_path, output="logits")), tmp_path / "own")
    outside = own_loss_config(tmp_path, output="logits")
    outside["loss"] = "cross_entropy"  # the model then gets the batch without its labels
    plain = train_ok(write_config(tmp_path, outside, "outside.yaml"), tmp_path / "outside")
    assert read_csv(own / "metrics.csv") and [r["loss"] for r in read_csv(own / "metrics.csv")] == [
        r["loss"] for r in read_csv(plain / "metrics.csv")
    ]
    summary = read_summary(own)
    assert summary["final_val_loss"] == read_summary(plain)["final_val_loss"]
    assert 0 <= summary["final_val_accuracy"] <= 1  # model.output names the logits


def test_own_loss_without_model_output_reports_the_loss_alone(tmp_path):
    run = train_ok(write_config(tmp_path, own_loss_config(tmp_path, returns="tensor")), tmp_path / "runs")
    assert list(read_csv(run / "epochs.csv")[0]) == [
        "epoch",
        "step",
        "train_loss",
        "lr",
        "elapsed_s",
        "val_loss",
    ]
    monitored = own_loss_config(tmp_path, returns="tensor")
    monitored["train"]["early_stopping"] = {"monitor": "val_accuracy"}
    message = config_error(invoke("check", write_config(tmp_path, monitored, "monitored.yaml")))
    assert "train.early_stopping.monitor: 'val_accuracy'" in message and "model.output" in message


def test_own_loss_with_pair_batches_calls_the_model_with_inputs_and_targets(tmp_path):
    run = train_ok(write_config(tmp_path, own_loss_config(tmp_path, data="pairs")), tmp_path / "runs")
    losses = [float(row["loss"]) for row in read_csv(run / "metrics.csv")]
    assert len(losses) == 3 * 5 and losses[-1] < losses[0]


def test_own_loss_from_a_model_that_returns_none_is_a_config_error(tmp_path):
    (tmp_path / "plain.py").write_text(
        "import torch\nclass Net(torch.nn.Module):\n"
        "    def __init__(self):\n        super().__init__()\n        self.layer = torch.nn.Linear(5, 2)\n"
        "    def forward(self, input_ids, labels=None):\n        return {'logits': self.layer(input_ids.float())}\n"
    )
    config = own_loss_config(tmp_path)
    config["model"] = {"name": "plain.py:Net"}
    message = config_error(invoke("check", write_config(tmp_path, config)))
    assert message.startswith("error: loss: from_model: the model returned no loss"), message
