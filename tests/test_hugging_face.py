"""Hugging Face `transformers` models as a user names them: `model: {name: "transformers:...", config:
{...}}`, built from the mapping with nothing downloaded, trained, and their mistakes caught at check."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

from optcli.train.checkpoints import load_checkpoint
from tests.conftest import (
    assert_clean_exit,
    config_error,
    invoke,
    read_csv,
    read_summary,
    train_ok,
    write_config,
)

GPT2 = {
    "seed": 1,
    "device": "cpu",
    "model": {"name": "transformers:GPT2LMHeadModel", "config": {"n_layer": 1, "n_head": 2, "n_embd": 32}},
    "data": {"name": "text", "path": "stdlib:json", "block_size": 32, "val_fraction": 0.1, "batch_size": 16},
    "optimizer": {"name": "adamw", "lr": 3e-3},
    "train": {"epochs": 1, "max_steps": 30},
}

SENTENCES = '''
import torch

class Sentences(torch.utils.data.Dataset):
    """Token ids with a label of 3 classes, as a tokenizer and a labelled corpus would give them."""
    classes = ["negative", "neutral", "positive"]

    def __init__(self, samples=96, length=12, causal=False):
        generator = torch.Generator().manual_seed(0)
        self.ids = torch.randint(1, 100, (samples, length), generator=generator)
        self.causal = causal

    def __len__(self):
        return len(self.ids)

    def __getitem__(self, index):
        ids = self.ids[index]
        labels = ids if self.causal else ids[0] % 3
        return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": labels}


class Text(Sentences):
    """The same token ids as a causal LM reads them: labels = input_ids."""
    classes = None
    vocab_size = 100

    def __init__(self):
        super().__init__(causal=True)
'''

BERT_CONFIG = {
    "num_hidden_layers": 1,
    "num_attention_heads": 2,
    "hidden_size": 32,
    "intermediate_size": 64,
    "vocab_size": 100,
}


def bert(tmp_path: Path, **model_config: object) -> dict[str, object]:
    (tmp_path / "sentences.py").write_text(SENTENCES)
    return {
        "device": "cpu",
        "model": {
            "name": "transformers:BertForSequenceClassification",
            "config": {**BERT_CONFIG, **model_config},
        },
        "data": {"name": "sentences.py:Sentences", "val_fraction": 0.25, "batch_size": 16},
        "optimizer": {"name": "adamw", "lr": 1e-3},
        "metrics": ["accuracy", "f1"],
        "train": {"epochs": 2},
    }


def test_a_gpt2_from_its_config_trains_on_text_and_generates(tmp_path):
    run_dir = train_ok(write_config(tmp_path, GPT2), tmp_path / "runs")
    recorded = yaml.safe_load((run_dir / "config.yaml").read_text())["model"]
    # The data's vocabulary filled in; its ModelOutput's logits are what the loss sees.
    assert recorded["config"]["vocab_size"] == 256 and recorded["output"] == "logits"
    epoch = read_csv(run_dir / "epochs.csv")[-1]
    assert float(epoch["val_token_accuracy"]) > 0.1 and "val_rmse" not in epoch
    # Stopped mid-epoch by max_steps, the run's scored weights are still its best.pt.
    assert load_checkpoint(run_dir / "checkpoints" / "best.pt")["loop"]["step"] == 30
    result = invoke("generate", run_dir, "--prompt", "import ", "--tokens", "10", "--seed", "4")
    assert_clean_exit(result, 0)
    assert result.stdout.startswith("import ") and len(result.stdout) > len("import \n")


def test_a_bert_classifier_trains_with_num_labels_from_the_data(tmp_path):
    run_dir = train_ok(write_config(tmp_path, bert(tmp_path)), tmp_path / "runs")
    recorded = yaml.safe_load((run_dir / "config.yaml").read_text())["model"]
    assert recorded["config"]["num_labels"] == 3
    epoch = read_csv(run_dir / "epochs.csv")[-1]
    assert {"val_accuracy", "val_f1_macro"} <= set(epoch)
    assert read_summary(run_dir)["status"] == "completed"


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"num_labels": 2}, "model.config.num_labels: 2, but the data has 3 classes"),
        ({"num_layers": 2}, "model.config.num_layers: unknown setting of BertConfig 'num_layers'"),
        (
            {"num_attention_heads": 3},
            "could not be built: ValueError: The hidden size (32) is not a multiple",
        ),
    ],
)
def test_a_bert_config_mistake_is_a_config_error_at_check_and_nothing_is_written(tmp_path, change, expected):
    config = write_config(tmp_path, bert(tmp_path, **change))
    assert expected in config_error(invoke("check", config))
    assert expected in config_error(invoke("train", config, "--out", tmp_path / "runs"))
    assert not (tmp_path / "runs").exists()


def test_a_gpt2_with_fewer_positions_than_the_block_size_is_refused(tmp_path):
    config = {
        **GPT2,
        "model": {**GPT2["model"], "config": {"n_layer": 1, "n_head": 2, "n_embd": 32, "n_positions": 16}},
    }
    message = config_error(invoke("check", write_config(tmp_path, config)))
    assert "model.config.n_positions: 16 positions, but data.block_size is 32" in message


def test_settings_outside_config_are_refused_naming_where_they_go(tmp_path):
    config = {**GPT2, "model": {"name": "transformers:GPT2LMHeadModel", "n_layer": 1}}
    message = config_error(invoke("check", write_config(tmp_path, config)))
    assert "model.n_layer: GPT2LMHeadModel takes its settings in model.config" in message


def test_a_causal_lm_computing_its_own_loss_on_text_data_is_refused(tmp_path):
    config = {**GPT2, "loss": "from_model"}
    message = config_error(invoke("check", write_config(tmp_path, config)))
    assert "loss: from_model:" in message and "already the next tokens" in message


def test_a_causal_lms_own_loss_is_judged_against_the_next_token(tmp_path):
    """labels = input_ids: the model shifts them itself, and token accuracy compares logit t with
    label t + 1, as the loss does (not with label t, which the logits never predict)."""
    (tmp_path / "sentences.py").write_text(SENTENCES)
    config = {
        "seed": 0,
        "device": "cpu",
        "model": {
            "name": "transformers:GPT2LMHeadModel",
            "config": {"n_layer": 1, "n_head": 2, "n_embd": 32, "vocab_size": 100},
        },
        "data": {"name": "sentences.py:Text", "val_fraction": 0.25, "batch_size": 16},
        "loss": "from_model",
        "optimizer": {"name": "adamw", "lr": 3e-3},
        "metrics": ["token_accuracy"],
        "train": {"epochs": 2},
    }
    run_dir = train_ok(write_config(tmp_path, config), tmp_path / "runs")
    from transformers import GPT2Config, GPT2LMHeadModel

    recorded = yaml.safe_load((run_dir / "config.yaml").read_text())
    model = GPT2LMHeadModel(GPT2Config(**recorded["model"]["config"]))
    model.load_state_dict(load_checkpoint(run_dir / "checkpoints" / "last.pt")["model"])
    data = read_csv(run_dir / "epochs.csv")[-1]
    rows = torch.tensor(__import__("json").loads((run_dir / "data.json").read_text())["val_rows"])
    ids = torch.randint(1, 100, (96, 12), generator=torch.Generator().manual_seed(0))[rows]
    with torch.no_grad():
        logits = model.eval()(input_ids=ids, attention_mask=torch.ones_like(ids)).logits
    right = (logits[:, :-1].argmax(dim=-1) == ids[:, 1:]).sum().item()
    assert float(data["val_token_accuracy"]) == right / ids[:, 1:].numel()


MEASURED = '''
import torch

class Measured(torch.nn.Module):
    """Reads a value of its input (a data-dependent branch): it cannot run on the meta device."""
    def __init__(self, in_features, out_features):
        super().__init__()
        self.linear = torch.nn.Linear(in_features, out_features)
        self.wrong = torch.nn.Linear(3, out_features)

    def forward(self, x):
        if x.abs().sum().item() >= 0:
            return self.wrong(x)
        return self.linear(x)
'''


def test_a_model_that_cannot_run_on_the_meta_device_is_checked_on_a_real_batch(tmp_path):
    (tmp_path / "measured.py").write_text(MEASURED)
    from tests.conftest import guide_config

    config = guide_config(model={"name": "measured.py:Measured"})
    message = config_error(invoke("check", write_config(tmp_path, config)))
    assert (
        "model: " in message
        and "measured.py:Measured cannot take the data's inputs (shape [2, 784]" in message
    )


def test_a_model_that_can_be_checked_neither_way_says_so(tmp_path):
    (tmp_path / "measured.py").write_text(
        MEASURED.replace(
            "self.wrong = torch.nn.Linear(3, out_features)",
            "self.wrong = self.linear\n"
            "        if not torch.empty(0).is_meta:\n            raise RuntimeError('needs a GPU')",
        )
    )
    from tests.conftest import guide_config

    config = guide_config(model={"name": "measured.py:Measured"})
    result = invoke("check", write_config(tmp_path, config))
    assert_clean_exit(result, 0)
    assert "cannot run on the meta device and was not built to run a real batch" in result.output
    assert "needs a GPU" in result.output
