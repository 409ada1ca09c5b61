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
