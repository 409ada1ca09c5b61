"""Language models as a user trains them: text data, the built-in GPT, logits [B, T, V] read as a class
per position, and what a trained model says (generate, predict), each against a hand-written
nanoGPT-style loop or the definition it follows."""

from __future__ import annotations

import hashlib
import json
import math
import signal
import sysconfig
from pathlib import Path

import pytest
import torch
import yaml
from torch.nn import functional

from optcli.components.gpt import GPT
from optcli.seeds import DATA_ORDER, derive_seed
from optcli.train.checkpoints import load_checkpoint
from tests.conftest import (
    assert_clean_exit,
    column,
    config_error,
    finish,
    invoke,
    kill_a_run_under_way,
    read_csv,
    read_summary,
    start_optcli,
    train_ok,
    write_config,
)

BLOCK, BATCH = 16, 8
SHAPE = {"layers": 2, "heads": 2, "width": 32}


def lm_config(**train: object) -> dict[str, object]:
    return {
        "seed": 5,
        "device": "cpu",
        "model": {"name": "gpt", **SHAPE},
        "data": {
            "name": "text",
            "path": "stdlib:json",
            "block_size": BLOCK,
            "val_fraction": 0.1,
            "batch_size": BATCH,
        },
        "optimizer": {"name": "adamw", "lr": 3e-3, "betas": [0.9, 0.95], "weight_decay": 0.1},
        "scheduler": {
            "name": "sequential_lr",
            "interval": "step",
            "milestones": [10],
            "schedulers": [
                {"name": "linear_lr", "start_factor": 0.1, "total_iters": 10},
                {"name": "cosine_annealing_lr", "T_max": 40},
            ],
        },
        "clip": {"max_norm": 1.0},
        "train": {"epochs": 1, "max_steps": 50, **train},
    }


def json_sources() -> torch.Tensor:
    """The standard library's json package, file after file in name order, as byte tokens."""
    files = sorted((Path(sysconfig.get_paths()["stdlib"]) / "json").glob("*.py"))
    return torch.tensor(list(b"".join(file.read_bytes() for file in files)), dtype=torch.long)


def nanogpt_loop(
    steps: int, threads: int, seed: int = 5
) -> tuple[list[float], list[float], list[float], GPT]:
    """nanoGPT's loop written out: consecutive windows of the corpus, the last tenth held out, a
    seeded order, cross-entropy over the flattened logits, clipping, AdamW, warmup then cosine. On
    `threads` threads, as the run was (a reduction's rounding can depend on how it is split)."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return _nanogpt_loop(steps, seed)
    finally:
        torch.set_num_threads(before)


def _nanogpt_loop(steps: int, seed: int) -> tuple[list[float], list[float], list[float], GPT]:
    tokens = json_sources()
    windows = (len(tokens) - 1) // BLOCK
    train = windows - round(windows * 0.1)
    inputs = tokens[: windows * BLOCK].view(windows, BLOCK)[:train]
    targets = tokens[1 : windows * BLOCK + 1].view(windows, BLOCK)[:train]
    torch.manual_seed(seed)
    model = GPT(256, BLOCK, **SHAPE)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3, betas=(0.9, 0.95), weight_decay=0.1)
    scheduler = torch.optim.lr_scheduler.SequentialLR(
        optimizer,
        [
            torch.optim.lr_scheduler.LinearLR(optimizer, start_factor=0.1, total_iters=10),
            torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=40),
        ],
        milestones=[10],
    )
    order = torch.randperm(train, generator=torch.Generator().manual_seed(derive_seed(seed, DATA_ORDER)))
    losses, rates, norms = [], [], []
    for step in range(steps):
        batch = order[step * BATCH : (step + 1) * BATCH]
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.zero_grad()
        logits = model(inputs[batch])
        loss = functional.cross_entropy(logits.view(-1, logits.size(-1)), targets[batch].view(-1))
        loss.backward()
        norms.append(torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0).item())
        optimizer.step()
        scheduler.step()
        losses.append(loss.item())
    return losses, rates, norms, model


def test_a_gpt_run_equals_the_hand_written_nanogpt_loop_bit_for_bit(tmp_path):
    run_dir = train_ok(write_config(tmp_path, lm_config()), tmp_path / "runs")
    rows = read_csv(run_dir / "metrics.csv")
    threads = yaml.safe_load((run_dir / "config.yaml").read_text())["train"]["threads"]
    losses, rates, norms, model = nanogpt_loop(50, threads)
    assert column(rows, "loss") == losses
    assert column(rows, "lr") == rates
    assert column(rows, "grad_norm") == norms
    weights = load_checkpoint(run_dir / "checkpoints" / "last.pt")["model"]
    assert all(torch.equal(weights[key], value) for key, value in model.state_dict().items())
    # Validation reads the sequences as language: no regression columns, perplexity from the loss.
    epoch = read_csv(run_dir / "epochs.csv")[-1]
    assert list(epoch)[5:] == ["val_loss", "val_perplexity", "val_bits_per_byte", "val_token_accuracy"]
    val_loss = float(epoch["val_loss"])
    assert float(epoch["val_perplexity"]) == pytest.approx(math.exp(val_loss), rel=1e-12)
    assert float(epoch["val_bits_per_byte"]) == pytest.approx(val_loss / math.log(2), rel=1e-12)


def test_validation_is_the_corpus_tail_and_token_accuracy_counts_every_position(tmp_path):
    run_dir = train_ok(write_config(tmp_path, lm_config(max_steps=5)), tmp_path / "runs")
    tokens = json_sources()
    windows = (len(tokens) - 1) // BLOCK
    held_out = round(windows * 0.1)
    model = GPT(256, BLOCK, **SHAPE)
    model.load_state_dict(load_checkpoint(run_dir / "checkpoints" / "last.pt")["model"])
    inputs = tokens[: windows * BLOCK].view(windows, BLOCK)[-held_out:]
    targets = tokens[1 : windows * BLOCK + 1].view(windows, BLOCK)[-held_out:]
    with torch.no_grad():
        logits = model.eval()(inputs)
    right = (logits.argmax(dim=-1) == targets).sum().item()
    epoch = read_csv(run_dir / "epochs.csv")[-1]
    assert float(epoch["val_token_accuracy"]) == right / targets.numel()
    expected_loss = functional.cross_entropy(logits.view(-1, 256), targets.reshape(-1)).item()
    assert float(epoch["val_loss"]) == pytest.approx(expected_loss, rel=1e-6)
    assert read_summary(run_dir)["final_val_token_accuracy"] == right / targets.numel()
    described = json.loads((run_dir / "data.json").read_text())
    assert described["val_windows"] == [windows - held_out, windows]
    digest = hashlib.sha256(bytes(tokens.tolist())).hexdigest()[:16]
    assert described["text"] == {"tokenizer": "bytes", "block_size": BLOCK, "tokens_sha256": digest}


@pytest.mark.slow
def test_a_language_model_killed_and_resumed_equals_the_uninterrupted_run(tmp_path):
    config = write_config(tmp_path, lm_config(epochs=3, max_steps=None, checkpoint_every=1))
    reference = train_ok(config, tmp_path / "reference")
    process = start_optcli("train", config, "--out", tmp_path / "runs", "--quiet")
    run_dir = kill_a_run_under_way(tmp_path / "runs", process)
    finish(process, 60)
    assert process.returncode == -signal.SIGKILL
    assert_clean_exit(invoke("resume", run_dir, "--quiet"), 0)
    for name in ("metrics.csv", "epochs.csv"):
        strip = lambda rows: [{k: v for k, v in row.items() if k != "elapsed_s"} for row in rows]  # noqa: E731
        assert strip(read_csv(run_dir / name)) == strip(read_csv(reference / name)), name
    final = load_checkpoint(run_dir / "checkpoints" / "last.pt")["model"]
    expected = load_checkpoint(reference / "checkpoints" / "last.pt")["model"]
    assert all(torch.equal(final[key], expected[key]) for key in expected)


@pytest.fixture(scope="module")
def trained_lm(tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("lm")
    return train_ok(write_config(directory, lm_config(max_steps=None)), directory / "runs")


def test_generate_repeats_for_a_seed_and_differs_for_another(trained_lm):
    def generated(*options: str) -> str:
        result = invoke("generate", trained_lm, "--prompt", "def ", "--tokens", "40", *options)
        assert_clean_exit(result, 0)
        assert result.stdout.startswith("def ")
        return result.stdout

    first = generated("--seed", "1", "--top-k", "10")
    assert generated("--seed", "1", "--top-k", "10") == first
    assert generated("--seed", "2", "--top-k", "10") != first
    assert generated("--temperature", "0", "--seed", "1") == generated("--temperature", "0", "--seed", "2")


def test_generate_at_temperature_zero_takes_the_likeliest_token_each_time(trained_lm):
    result = invoke("generate", trained_lm, "--prompt", "import ", "--tokens", "5", "--temperature", "0")
    assert_clean_exit(result, 0)
    model = GPT(256, BLOCK, **SHAPE)
    model.load_state_dict(load_checkpoint(trained_lm / "checkpoints" / "best.pt")["model"])
    context = list(b"import ")
    with torch.no_grad():
        for _ in range(5):
            context.append(int(model.eval()(torch.tensor([context[-BLOCK:]]))[0, -1].argmax()))
    assert result.stdout == bytes(context).decode("utf-8", errors="replace") + "\n"


def test_predict_on_a_language_model_gives_the_next_token_and_its_probability(trained_lm, tmp_path):
    source = tmp_path / "prompts.txt"
    source.write_text('import json\n\ndef load(s, "x"\n')
    out = tmp_path / "next.csv"
    result = invoke("predict", trained_lm, source, "--out", out)
    assert_clean_exit(result, 0)
    rows = read_csv(out)
    assert [row["input"] for row in rows] == ["import json", 'def load(s, "x"']
    model = GPT(256, BLOCK, **SHAPE)
    model.load_state_dict(load_checkpoint(trained_lm / "checkpoints" / "best.pt")["model"])
    for row in rows:
        with torch.no_grad():
            logits = model.eval()(torch.tensor([list(row["input"].encode())[-BLOCK:]]))[0, -1]
        probabilities = torch.softmax(logits.double(), dim=0)
        assert row["prediction"] == chr(int(probabilities.argmax()))
        assert float(row["probability"]) == float(probabilities.max())
    assert out.stat().st_size < 200  # a row per line, never a column per logit


def test_generate_refuses_a_run_that_is_not_a_language_model(tmp_path):
    from tests.conftest import guide_config

    config = guide_config(train={"epochs": 1})
    run_dir = train_ok(write_config(tmp_path, config), tmp_path / "runs")
    message = config_error(invoke("generate", run_dir, "--prompt", "x"))
    assert "was not trained on text" in message and "data.name: text" in message


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            {"path": "stdlib:no_such_package"},
            "data.path: the standard library has no module or package 'no_such_package'",
        ),
        ({"path": "missing/*.txt"}, "missing/*.txt names no text file"),
        ({"block_size": 10_000_000}, "data.block_size:"),
        ({"normalize": True}, "data.normalize: text's inputs are token ids"),
        ({"tokenizer": "gpt2"}, "data.tokenizer"),
    ],
)
def test_text_data_mistakes_are_config_errors_naming_the_key(tmp_path, change, expected):
    config = lm_config()
    config["data"].update(change)  # type: ignore[attr-defined]
    message = config_error(invoke("check", write_config(tmp_path, config)))
    assert expected in message


def test_bits_per_byte_is_refused_for_data_that_is_not_byte_text(tmp_path):
    from tests.conftest import guide_config

    config = guide_config(metrics=["bits_per_byte"])
    message = config_error(invoke("check", write_config(tmp_path, config)))
    assert "metrics.0: bits_per_byte judges a token per position" in message


def test_a_folder_of_text_files_is_a_corpus_and_its_windows_its_samples(tmp_path):
    corpus = tmp_path / "corpus"
    (corpus / "sub").mkdir(parents=True)
    (corpus / "a.txt").write_text("hello world\n" * 40)
    (corpus / "sub" / "b.md").write_text("# title\n" * 40)
    (corpus / "skip.bin").write_bytes(b"\x00" * 1000)
    config = lm_config(max_steps=3)
    config["data"] = {"name": "text", "path": "corpus", "block_size": 8, "batch_size": 4}
    result = invoke("check", write_config(tmp_path, config))
    assert_clean_exit(result, 0)
    assert f"text ({(480 + 320 - 1) // 8} samples" in result.stdout


def test_a_users_dataset_of_token_sequences_trains_with_cross_entropy_per_position(tmp_path):
    (tmp_path / "tokens.py").write_text(
        "import torch\n"
        "class Shifted(torch.utils.data.Dataset):\n"
        "    vocab_size = 11\n"
        "    def __init__(self):\n"
        "        self.data = torch.randint(0, 11, (64, 9), generator=torch.Generator().manual_seed(0))\n"
        "    def __len__(self):\n"
        "        return len(self.data)\n"
        "    def __getitem__(self, index):\n"
        "        return self.data[index, :-1], self.data[index, 1:]\n"
    )
    config = {
        "device": "cpu",
        "model": {"name": "gpt", "layers": 1, "heads": 1, "width": 8},
        "data": {"name": "tokens.py:Shifted", "batch_size": 16, "val_fraction": 0.25},
        "optimizer": {"name": "adam", "lr": 0.01},
        "train": {"epochs": 1},
    }
    run_dir = train_ok(write_config(tmp_path, config), tmp_path / "runs")
    recorded = (run_dir / "config.yaml").read_text()
    assert "cross_entropy" in recorded and "vocab_size: 11" in recorded and "block_size: 8" in recorded
    epoch = read_csv(run_dir / "epochs.csv")[-1]
    assert "val_token_accuracy" in epoch and "val_rmse" not in epoch and "val_bits_per_byte" not in epoch


def test_a_model_file_imports_its_neighbour_and_the_run_hashes_both(tmp_path, monkeypatch):
    """`from layers import Tiny` in models/net.py works without PYTHONPATH, from any working folder;
    summary.json's code_sha256 covers layers.py too, so that `predict` notices it changed."""
    models = tmp_path / "models"
    models.mkdir()
    (models / "layers.py").write_text(
        "import torch\nclass Tiny(torch.nn.Module):\n"
        "    def __init__(self, width):\n        super().__init__()\n        self.linear = torch.nn.Linear(width, 10)\n"
        "    def forward(self, x):\n        return self.linear(x)\n"
    )
    (models / "net.py").write_text(
        "from layers import Tiny\n\ndef net(in_features):\n    return Tiny(in_features)\n"
    )
    from tests.conftest import guide_config

    config = guide_config(model={"name": "models/net.py:net"}, train={"epochs": 1})
    config_path = write_config(tmp_path, config)
    monkeypatch.chdir(tmp_path.parent)
    run_dir = train_ok(config_path, tmp_path / "runs")
    hashed = read_summary(run_dir)["code_sha256"]
    assert sorted(Path(file).name for file in hashed) == ["layers.py", "net.py"]
    (models / "layers.py").write_text((models / "layers.py").read_text() + "\n# edited\n")
    inputs = tmp_path / "x.pt"
    torch.save({"x": torch.randn(3, 784)}, inputs)
    result = invoke("predict", run_dir, inputs, "--out", tmp_path / "p.csv")
    assert_clean_exit(result, 0)
    assert "layers.py has changed since the run" in result.stderr


def test_language_metrics_rank_a_comparison_and_pick_best_pt(tmp_path):
    """val_token_accuracy ranks higher-first; val_bits_per_byte, as train.monitor, picks best.pt."""
    base = lm_config(max_steps=None, eval_every=20, monitor="val_bits_per_byte")
    base["data"]["path"] = str(tmp_path / "corpus.txt")  # type: ignore[index]
    (tmp_path / "corpus.txt").write_bytes(json_sources().to(torch.uint8).numpy().tobytes()[:12_000])
    compare = {
        "base": base,
        "seeds": [0, 1],
        "runs": {"adamw": {}, "sgd": {"optimizer": {"name": "sgd", "lr": 0.05}}},
    }
    path = write_config(tmp_path, compare, "compare.yaml")
    result = invoke("compare", path, "--metric", "val_token_accuracy", "--out", tmp_path / "out", "--quiet")
    assert_clean_exit(result, 0)
    directory = next((tmp_path / "out").glob("compare-*/*"))
    summary = read_csv(directory / "summary.csv")
    assert {row["metric"] for row in summary} == {"val_token_accuracy"}
    means = [float(row["mean"]) for row in summary]
    assert means == sorted(means, reverse=True)
    run = next(directory.glob("adamw-seed0"))
    evals = read_csv(run / "evals.csv") + read_csv(run / "epochs.csv")
    best = min(evals, key=lambda row: float(row["val_bits_per_byte"]))
    assert load_checkpoint(run / "checkpoints" / "best.pt")["loop"]["step"] == int(best["step"])
