"""`optimizer.parts`: several optimizers in one run (Muon for the matrices, AdamW for the rest), each
over its own parameters, against the hand-written loop with two torch optimizers and two schedulers."""

from __future__ import annotations

import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import pytorch_optimizer
import torch
import yaml
from torch import nn

from optcli.train.checkpoints import load_checkpoint
from tests.conftest import (
    assert_clean_exit,
    column,
    config_error,
    finish,
    invoke,
    read_csv,
    read_summary,
    start_optcli,
    train_ok,
    wait_for_session_to_end,
    write_config,
)

# Three models of the user's, in a file of theirs: the shapes the kinds must tell apart (a Sequential's
# Linear layers; Conv weights and a BatchNorm; embeddings, LayerNorms and attention matrices).
MODELS = '''
import torch
from torch import nn


class Mlp(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 4))

    def forward(self, x):
        return self.net(x)


class Cnn(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 4, 3, padding=1)
        self.norm = nn.BatchNorm2d(4)
        self.conv2 = nn.Conv2d(4, 4, 3, padding=1)
        self.head = nn.Linear(64, 4)

    def forward(self, x):
        x = torch.relu(self.norm(self.conv1(x.view(-1, 1, 4, 4))))
        return self.head(torch.relu(self.conv2(x)).flatten(1))


class Transformer(nn.Module):
    """One pre-norm attention block over 16 tokens of a vocabulary of 8 (given as floats)."""

    def __init__(self):
        super().__init__()
        self.tokens = nn.Embedding(8, 16)
        self.positions = nn.Embedding(16, 16)
        self.ln1 = nn.LayerNorm(16)
        self.qkv = nn.Linear(16, 48)
        self.proj = nn.Linear(16, 16)
        self.ln2 = nn.LayerNorm(16)
        self.up = nn.Linear(16, 32)
        self.down = nn.Linear(32, 16)
        self.ln_f = nn.LayerNorm(16)
        self.head = nn.Linear(16, 4)

    def forward(self, x):
        tokens = x.long()
        h = self.tokens(tokens) + self.positions(torch.arange(tokens.shape[1]))
        q, k, v = self.qkv(self.ln1(h)).split(16, dim=-1)
        h = h + self.proj(torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True))
        h = h + self.down(torch.relu(self.up(self.ln2(h))))
        return self.head(self.ln_f(h).mean(dim=1))
'''

# Each model's matrices, written out by hand (not by optcli's kinds): Muon's parameters.
MATRICES = {
    "Mlp": ["net.0.weight", "net.2.weight"],
    "Cnn": ["conv1.weight", "conv2.weight"],
    "Transformer": ["qkv.weight", "proj.weight", "up.weight", "down.weight"],
}
# Muon for the matrices; for the conv weights (4-D), which torch's Muon refuses, pytorch-optimizer's.
MUON = {
    "Mlp": ("muon", lambda p: torch.optim.Muon(p, lr=0.02, weight_decay=0.01)),
    "Cnn": (
        "pytorch_optimizer:Muon",
        lambda p: pytorch_optimizer.Muon([{"params": p, "use_muon": True}], lr=0.02, weight_decay=0.01),
    ),
    "Transformer": ("muon", lambda p: torch.optim.Muon(p, lr=0.02, weight_decay=0.01)),
}
WARMUP, STEPS, BATCH = 4, 16, 32  # 256 rows in batches of 32: 8 steps an epoch, 2 epochs
# The schedule both parts follow, each from its own base rate: linear warmup, then cosine.
WARMUP_COSINE = {
    "name": "sequential_lr",
    "interval": "step",
    "milestones": [WARMUP],
    "schedulers": [
        {"name": "linear_lr", "start_factor": 0.25, "total_iters": WARMUP},
        {"name": "cosine_annealing_lr"},
    ],
}


def warmup_cosine(optimizer: torch.optim.Optimizer) -> Any:
    """WARMUP_COSINE written by hand (optcli fills the cosine's T_max with the steps after the warmup)."""
    scheduler = torch.optim.lr_scheduler
    warmup = scheduler.LinearLR(optimizer, start_factor=0.25, total_iters=WARMUP)
    cosine = scheduler.CosineAnnealingLR(optimizer, T_max=STEPS - WARMUP)
    return scheduler.SequentialLR(optimizer, [warmup, cosine], milestones=[WARMUP])


def planned_rates(lr: float) -> list[float]:
    """WARMUP_COSINE's rate at each step, from a hand-built scheduler on one parameter."""
    optimizer = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=lr)
    scheduler, rates = warmup_cosine(optimizer), []
    for _ in range(STEPS):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return rates


@dataclass
class Steps:
    losses: list[float]
    muon_rates: list[float]
    adamw_rates: list[float]
    norms: list[float]
    weights: dict[str, torch.Tensor]

    def assert_equal(self, other: Steps) -> None:
        """Bit for bit."""
        assert self.losses == other.losses
        assert self.muon_rates == other.muon_rates
        assert self.adamw_rates == other.adamw_rates
        assert self.norms == other.norms
        assert list(self.weights) == list(other.weights)
        assert all(torch.equal(self.weights[key], other.weights[key]) for key in self.weights)


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    (tmp_path / "models.py").write_text(MODELS)
    generator = torch.Generator().manual_seed(7)
    tokens = torch.randint(0, 8, (256, 16), generator=generator).float()
    torch.save(
        {
            "x": torch.randn(256, 16, generator=generator),
            "y": torch.randint(0, 4, (256,), generator=generator),
        },
        tmp_path / "data.pt",
    )
    torch.save({"x": tokens, "y": torch.randint(0, 4, (256,), generator=generator)}, tmp_path / "tokens.pt")
    return tmp_path


def parts_config(model: str, data: str = "data.pt", **sections: Any) -> dict[str, Any]:
    muon_name = MUON[model][0]
    config: dict[str, Any] = {
        "seed": 0,
        "device": "cpu",
        "model": {"name": f"models.py:{model}"},
        "data": {"name": "tensors", "path": data, "batch_size": BATCH, "shuffle": False},
        "optimizer": {
            "parts": {
                "muon": {"name": muon_name, "params": "matrices", "lr": 0.02, "weight_decay": 0.01},
                "adamw": {
                    "name": "adamw",
                    "params": "rest",
                    "lr": 3e-3,
                    "betas": [0.9, 0.95],
                    "weight_decay": 0.0,
                },
            }
        },
        "scheduler": WARMUP_COSINE,
        "train": {"epochs": 2},
    }
    config.update(sections)
    return config


def hand_written(
    workspace: Path, model_name: str, data: str = "data.pt", clip: float | None = None, accumulate: int = 1
) -> Steps:
    """Two torch optimizers and two schedulers over the model's parameters, split by hand."""
    namespace: dict[str, Any] = {}
    exec(MODELS, namespace)
    loaded = torch.load(workspace / data)
    inputs, labels = loaded["x"], loaded["y"]
    torch.manual_seed(0)
    model = namespace[model_name]()
    named = dict(model.named_parameters())
    matrices = [named[name] for name in MATRICES[model_name]]
    rest = [parameter for name, parameter in named.items() if name not in MATRICES[model_name]]
    muon = MUON[model_name][1](matrices)
    adamw = torch.optim.AdamW(rest, lr=3e-3, betas=(0.9, 0.95), weight_decay=0.0)
    optimizers = [muon, adamw]
    schedulers = [warmup_cosine(o) for o in optimizers]
    criterion = nn.CrossEntropyLoss()
    steps = Steps([], [], [], [], {})
    micro = BATCH // accumulate
    for _epoch in range(2):
        for start in range(0, len(inputs), BATCH):
            steps.muon_rates.append(muon.param_groups[0]["lr"])
            steps.adamw_rates.append(adamw.param_groups[0]["lr"])
            for optimizer in optimizers:
                optimizer.zero_grad()
            losses = []
            for offset in range(start, start + BATCH, micro):
                loss = criterion(model(inputs[offset : offset + micro]), labels[offset : offset + micro])
                weighted = loss * (1 / accumulate) if accumulate > 1 else loss
                weighted.backward()
                losses.append(weighted.detach())
            norm = nn.utils.get_total_norm([p.grad for p in model.parameters()])
            if clip is not None:
                nn.utils.clip_grad_norm_(model.parameters(), max_norm=clip)
            for optimizer in optimizers:
                optimizer.step()
            for scheduler in schedulers:
                scheduler.step()
            steps.losses.append((losses[0] if len(losses) == 1 else torch.stack(losses).sum()).item())
            steps.norms.append(norm.item())
    steps.weights = dict(model.state_dict())
    return steps


def optcli_steps(run_dir: Path) -> Steps:
    rows = read_csv(run_dir / "metrics.csv")
    weights = dict(load_checkpoint(run_dir / "checkpoints" / "last.pt")["model"])
    return Steps(
        column(rows, "loss"),
        column(rows, "lr_muon"),
        column(rows, "lr_adamw"),
        column(rows, "grad_norm"),
        weights,
    )


@pytest.mark.parametrize("model", ["Mlp", "Cnn", "Transformer"])
def test_muon_on_the_matrices_and_adamw_on_the_rest_equal_the_hand_written_loop(workspace, model):
    data = "tokens.pt" if model == "Transformer" else "data.pt"
    run_dir = train_ok(write_config(workspace, parts_config(model, data)), workspace / "runs")
    expected = hand_written(workspace, model, data)
    found = optcli_steps(run_dir)
    found.assert_equal(expected)
    assert len(set(found.muon_rates)) > 3 and found.adamw_rates[0] == 3e-3 * 0.25  # each from its own base
    # lr is param_groups[0]'s, the first part's.
    assert column(read_csv(run_dir / "metrics.csv"), "lr") == found.muon_rates


@pytest.mark.parametrize(("clip", "accumulate"), [(0.05, 1), (None, 2)], ids=["clip", "accumulate"])
def test_parts_under_clipping_and_accumulation_equal_the_hand_written_loop(workspace, clip, accumulate):
    train: dict[str, Any] = {"epochs": 2, "accumulate": accumulate}
    config = parts_config("Transformer", "tokens.pt", train=train)
    if accumulate > 1:
        config["data"]["batch_size"] = BATCH // accumulate
    if clip is not None:
        config["clip"] = {"max_norm": clip}
    run_dir = train_ok(write_config(workspace, config), workspace / "runs")
    optcli_steps(run_dir).assert_equal(hand_written(workspace, "Transformer", "tokens.pt", clip, accumulate))


def test_each_part_with_its_own_scheduler_equals_two_schedulers(workspace):
    """A part's own scheduler: muon follows warmup and cosine, adamw a step schedule (and a parts' own
    scheduler beside the whole optimizer's is refused)."""
    config = parts_config("Mlp")
    del config["scheduler"]
    parts = config["optimizer"]["parts"]
    parts["muon"]["scheduler"] = WARMUP_COSINE
    parts["adamw"]["scheduler"] = {"name": "step_lr", "step_size": 5, "gamma": 0.5, "interval": "step"}
    run_dir = train_ok(write_config(workspace, config), workspace / "runs")
    rows = read_csv(run_dir / "metrics.csv")
    assert column(rows, "lr_adamw") == [3e-3 * 0.5 ** (step // 5) for step in range(STEPS)]
    assert column(rows, "lr_muon") == planned_rates(0.02)
    recorded = yaml.safe_load((run_dir / "config.yaml").read_text())["optimizer"]["parts"]
    assert recorded["adamw"]["scheduler"]["name"] == "StepLR" and recorded["muon"]["params"] == ["matrices"]
    message = config_error(invoke("check", write_config(workspace, {**config, "scheduler": WARMUP_COSINE})))
    assert "optimizer.parts.muon.scheduler: the top-level scheduler already drives every part" in message
    parts["adamw"]["scheduler"]["interval"] = "epoch"
    message = config_error(invoke("check", write_config(workspace, config)))
    assert "need one interval and monitor (muon: per step, adamw: per epoch)" in message


def test_check_prints_each_parts_class_counts_and_rates(workspace):
    result = invoke("check", write_config(workspace, parts_config("Transformer", "tokens.pt")))
    assert_clean_exit(result, 0)
    lines = result.stderr.splitlines()
    muon = next(line for line in lines if "muon (Muon, matrices)" in line)
    adamw = next(line for line in lines if "adamw (AdamW, rest)" in line)
    # qkv 16x48, proj 16x16, up 16x32, down 32x16: 768 + 256 + 512 + 512 = 2,048 in 4 tensors.
    assert "2,048 parameters in   4 tensors  lr 0.02  weight_decay 0.01" in muon
    assert "tensors  lr 0.003  weight_decay 0.0" in adamw and "note: optimizer.parts:" in result.stderr


def test_the_kinds_of_a_transformer(workspace):
    from optcli.config.parts import parameter_kinds

    namespace: dict[str, Any] = {}
    exec(MODELS, namespace)
    kinds = parameter_kinds(namespace["Transformer"]())
    assert kinds["tokens.weight"] == kinds["positions.weight"] == "embeddings"
    assert kinds["head.weight"] == kinds["head.bias"] == "head"
    assert kinds["ln1.weight"] == kinds["ln_f.bias"] == "norms"
    assert kinds["qkv.bias"] == "biases" and kinds["qkv.weight"] == "matrices"


def test_a_parameter_in_two_parts_or_in_none_is_named(workspace):
    config = parts_config("Mlp")
    config["optimizer"]["parts"]["adamw"]["params"] = ["biases", "net.0.weight"]
    message = config_error(invoke("check", write_config(workspace, config)))
    assert "net.0.weight by muon and adamw" in message  # taken twice
    assert "no part takes net.4.weight (head), net.4.bias (head)" in message  # taken by none
    assert "params: rest" in message  # the way out


def test_a_selector_that_takes_nothing_and_a_misspelt_argument_are_named(workspace):
    config = parts_config("Mlp")
    config["optimizer"]["parts"]["muon"]["params"] = ["matrices", "encoder.*"]
    message = config_error(invoke("check", write_config(workspace, config)))
    assert "optimizer.parts.muon.params: 'encoder.*' takes no parameter of the model (net.0.weight" in message
    config = parts_config("Mlp")
    config["optimizer"]["parts"]["adamw"]["betaz"] = [0.9, 0.9]
    message = config_error(invoke("check", write_config(workspace, config)))
    assert "optimizer.parts.adamw.betaz:" in message and "betas" in message


def test_muon_given_other_shapes_names_them_and_suggests_the_split(workspace):
    config = parts_config("Mlp", optimizer={"name": "muon", "lr": 0.02})
    message = config_error(invoke("check", write_config(workspace, config)))
    assert "optimizer: Muon takes only 2-D parameters, and these are not: net.0.bias (1-D)" in message
    assert "{muon: {name: muon, params: matrices}, adamw: {name: adamw, params: rest}}" in message
    # torch's Muon on a CNN's 4-D conv weights, in a part: the parameters are named.
    config = parts_config("Cnn")
    config["optimizer"]["parts"]["muon"]["name"] = "muon"
    message = config_error(invoke("check", write_config(workspace, config)))
    assert (
        "optimizer.parts.muon: Muon takes only 2-D parameters, and these are not: conv1.weight (4-D)"
        in message
    )


def test_pytorch_optimizers_muon_family_trains_and_resumes(workspace):
    """use_muon on every group, given by optcli: Muon and AdaMuon train the whole MLP or a part."""
    for name in ("pytorch_optimizer:Muon", "pytorch_optimizer:NorMuon"):
        config = parts_config("Mlp", optimizer={"name": name, "lr": 0.02}, scheduler=None)
        del config["scheduler"]
        run_dir = train_ok(
            write_config(workspace, config, f"{name[-6:]}.yaml"), workspace / "runs" / name[-6:]
        )
        assert read_summary(run_dir)["status"] == "completed"
    config = parts_config("Mlp")
    config["optimizer"]["parts"]["muon"]["name"] = "pytorch_optimizer:AdaMuon"
    run_dir = train_ok(write_config(workspace, config, "ada.yaml"), workspace / "runs" / "ada")
    assert read_summary(run_dir)["status"] == "completed"


def test_optimizer_keys_beside_parts_and_no_name_are_refused(workspace):
    config = parts_config("Mlp")
    config["optimizer"]["lr"] = 0.1
    message = config_error(invoke("check", write_config(workspace, config)))
    assert "optimizer: lr: beside parts, each part names its own optimizer" in message
    config = parts_config("Mlp", optimizer={"lr": 0.1})
    message = config_error(invoke("check", write_config(workspace, config)))
    assert "optimizer: give name (one optimizer" in message


def test_set_reaches_a_part_and_a_parts_class_switch_keeps_its_params(workspace):
    path = write_config(workspace, parts_config("Mlp"))
    result = invoke(
        "check",
        path,
        "--set",
        "optimizer.parts.muon.lr=0.05",
        "--set",
        "optimizer.parts.adamw.name=sgd",
        "--resolved",
    )
    assert_clean_exit(result, 0)
    parts = yaml.safe_load(result.stdout.rsplit("ok:", 1)[0])["optimizer"]["parts"]
    assert parts["muon"]["lr"] == 0.05
    # SGD's defaults, nothing of AdamW's (no betas, lr back to SGD's own); the part's params stay.
    assert parts["adamw"]["name"] == "SGD" and parts["adamw"]["params"] == ["rest"]
    assert parts["adamw"]["lr"] == 0.001 and "betas" not in parts["adamw"]


def test_schedule_shows_each_parts_rate(workspace):
    path = write_config(workspace, parts_config("Mlp"))
    csv_path = workspace / "rates.csv"
    result = invoke("schedule", path, "--csv", csv_path)
    assert_clean_exit(result, 0)
    assert "muon (Muon on matrices): start 5.000e-03" in result.stdout
    assert "adamw (AdamW on rest): start 7.500e-04" in result.stdout
    rows = read_csv(csv_path)
    assert list(rows[0]) == ["step", "epoch", "lr", "lr_muon", "lr_adamw"]
    assert column(rows, "lr_adamw") == planned_rates(3e-3)


@pytest.mark.slow
def test_a_killed_run_with_parts_resumes_bit_exact(workspace):
    config = parts_config("Transformer", "tokens.pt", train={"epochs": 60, "checkpoint_every": 1})
    config["scheduler"] = {"name": "cosine_annealing_lr", "interval": "step"}
    path = write_config(workspace, config)
    reference = train_ok(path, workspace / "reference")
    process = start_optcli("train", path, "--out", workspace / "runs", "--quiet")
    deadline = time.monotonic() + 120
    run_dir = None
    while time.monotonic() < deadline and run_dir is None:
        found = [p for p in (workspace / "runs").glob("*/*/metrics.csv") if p.stat().st_size > 8_000]
        checkpoints = list((workspace / "runs").glob("*/*/checkpoints/last.pt"))
        run_dir = found[0].parent if found and checkpoints else None
        time.sleep(0.01)
    assert run_dir is not None and process.poll() is None, "the run ended before it could be killed"
    process.send_signal(signal.SIGKILL)
    finish(process, 30)
    result = invoke("resume", run_dir, "--quiet")
    assert_clean_exit(result, 0)
    columns = ("step", "loss", "lr_muon", "lr_adamw", "grad_norm")
    resumed_rows = [tuple(row[key] for key in columns) for row in read_csv(run_dir / "metrics.csv")]
    assert resumed_rows == [tuple(row[key] for key in columns) for row in read_csv(reference / "metrics.csv")]
    final = load_checkpoint(run_dir / "checkpoints" / "last.pt")
    expected = load_checkpoint(reference / "checkpoints" / "last.pt")
    assert all(torch.equal(final["model"][key], value) for key, value in expected["model"].items())
    assert len(read_summary(run_dir)["resumes"]) == 1


def test_find_lr_scales_every_part_by_one_factor_and_applies_each_parts_rate(workspace):
    path = write_config(workspace, parts_config("Mlp"))
    applied = workspace / "tuned.yaml"
    result = invoke("find-lr", path, "--steps", "30", "--out", workspace / "lr", "--apply", applied)
    assert_clean_exit(result, 0)
    assert "every part's rate was scaled by one factor, keeping their ratios" in result.stdout
    parts = yaml.safe_load(applied.read_text())["optimizer"]["parts"]
    muon, adamw = parts["muon"]["lr"], parts["adamw"]["lr"]
    assert muon != 0.02 and muon / adamw == pytest.approx(0.02 / 3e-3, rel=1e-12)
    assert f"optimizer.parts.muon.lr: {muon:.2e}, optimizer.parts.adamw.lr: {adamw:.2e}" in result.stdout
    assert_clean_exit(invoke("check", applied), 0)


@pytest.mark.slow
def test_a_killed_comparison_of_hybrid_arms_resumes_to_the_uninterrupted_one(workspace):
    base = parts_config("Transformer", "tokens.pt", train={"epochs": 12})
    compare = {
        "base": base,
        "seeds": [0, 1],
        "runs": {
            "hybrid": {},
            "hybrid_slow": {"optimizer": {"parts": {"muon": {"lr": 0.005}}}},
            "adamw": {"optimizer": {"name": "adamw", "lr": 3e-3}},
        },
    }
    path = write_config(workspace, compare, "compare.yaml")
    assert_clean_exit(invoke("compare", path, "--out", workspace / "whole", "--quiet"), 0)
    (uninterrupted,) = (workspace / "whole").glob("compare-*/*")
    process = start_optcli("compare", path, "--out", workspace / "out", "--quiet", "--jobs", "1")
    deadline = time.monotonic() + 120
    while (
        time.monotonic() < deadline and len(list((workspace / "out").glob("compare-*/*/*/summary.json"))) < 2
    ):
        assert process.poll() is None, process.communicate()
        time.sleep(0.02)
    time.sleep(0.3)  # inside the next run
    process.send_signal(signal.SIGKILL)
    finish(process, 60)
    (directory,) = (workspace / "out").glob("compare-*/*")
    wait_for_session_to_end(process)  # (a killed parent's workers stop at its death)
    assert len(list(directory.glob("*/summary.json"))) < 6, "the comparison ended before the kill"
    assert_clean_exit(invoke("compare", "--resume", directory, "--quiet"), 0)
    for run in sorted(uninterrupted.glob("*-seed*")):
        columns = ("step", "loss", "lr_muon", "lr_adamw", "lr", "grad_norm")
        expected = [tuple(row.get(key) for key in columns) for row in read_csv(run / "metrics.csv")]
        found = [
            tuple(row.get(key) for key in columns) for row in read_csv(directory / run.name / "metrics.csv")
        ]
        assert found == expected, run.name


def test_an_sgd_arm_under_an_adamw_base_has_sgds_defaults_and_check_shows_the_arms_side_by_side(workspace):
    base = parts_config("Mlp", optimizer={"name": "adamw", "lr": 3e-3, "weight_decay": 0.1})
    base["optimizer"]["param_groups"] = [{"params": "*.bias", "weight_decay": 0.0}]
    compare = {
        "base": base,
        "seeds": [0],
        "runs": {"adamw": {}, "sgd": {"optimizer": {"name": "sgd", "lr": 0.3, "momentum": 0.9}}},
    }
    path = write_config(workspace, compare, "compare.yaml")
    result = invoke("check", path, "--resolved")
    assert_clean_exit(result, 0)
    resolved = yaml.safe_load(result.stdout.rsplit("ok:", 1)[0])
    sgd = resolved["sgd"]["optimizer"]
    assert sgd["weight_decay"] == 0 and sgd["lr"] == 0.3 and sgd["momentum"] == 0.9  # SGD's default decay
    assert sgd["param_groups"] == [{"params": ["*.bias"], "weight_decay": 0.0}]  # the model's groups stay
    assert "arm 'sgd': optimizer: switching to SGD starts from its own defaults" in result.stderr
    table_text = invoke("check", path).stdout.partition("(*: differs between arms)")[0]
    table = [line.split() for line in table_text.splitlines()]
    assert ["key", "adamw", "sgd"] in table
    assert ["*", "optimizer.weight_decay", "0.1", "0"] in table and [
        "*",
        "optimizer.name",
        "AdamW",
        "SGD",
    ] in table
    assert ["optimizer.param_groups.0.weight_decay", "0.0", "0.0"] in table  # the same in both: unmarked
    # A group key the new class does not take is named with its group.
    compare["runs"]["sgd"]["optimizer"] = {"name": "sgd"}
    base["optimizer"]["param_groups"] = [{"params": "*.bias", "betas": [0.9, 0.9]}]
    message = config_error(invoke("check", write_config(workspace, compare, "compare.yaml")))
    assert "optimizer.param_groups.0.betas" in message and "sgd" in message


def test_tensorboard_and_mlflow_log_each_parts_rate_under_its_name(workspace):
    import mlflow

    from tests.test_tensorboard import events

    store = f"sqlite:///{workspace}/ml.db"
    config = parts_config("Mlp", output={"tensorboard": True, "mlflow": {"tracking_uri": store}})
    run_dir = train_ok(write_config(workspace, config), workspace / "runs")
    rows = read_csv(run_dir / "metrics.csv")
    written = events(run_dir / "tensorboard")
    client = mlflow.tracking.MlflowClient(store)
    (run,) = client.search_runs([client.get_experiment_by_name(read_summary(run_dir)["name"]).experiment_id])
    for rate in ("lr_muon", "lr_adamw"):
        expected = [float(row[rate]) for row in rows]
        assert [event.value for event in written.Scalars(f"train/{rate}")] == pytest.approx(
            expected, rel=1e-6
        )
        history = sorted(client.get_metric_history(run.info.run_id, rate), key=lambda metric: metric.step)
        assert [metric.value for metric in history] == pytest.approx(expected, rel=1e-12)
