"""Real data: CSV, IDX and scikit-learn datasets, validation and test data, normalization, early stopping."""

from __future__ import annotations

import csv
import gzip
import json
import struct
import sys
from pathlib import Path

import pytest
import torch
import yaml

from optcli.config.loading import RawConfig, load_config
from optcli.config.resolve import resolve_config
from optcli.config.splits import split_rows
from optcli.train.loop import run_training
from optcli.train.records import EpochRecord
from optcli.train.run_data import load_data
from optcli.train.session import build_session
from tests.conftest import (
    REPO,
    assert_clean_exit,
    column,
    config_error,
    invoke,
    read_csv,
    read_summary,
    train_ok,
    write_config,
)


def config(data: dict, **sections) -> dict:
    base = {
        "device": "cpu",
        "model": {"name": "mlp", "hidden": [16]},
        "data": {"batch_size": 16, **data},
        "optimizer": {"name": "adam", "lr": 0.01},
        "train": {"epochs": 3},
    }
    base.update(sections)
    return base


def write_fruit(path: Path, rows: int = 60, delimiter: str = ",", header: bool = True) -> Path:
    generator = torch.Generator().manual_seed(0)
    lines = ["weight,width,kind"] if header else []
    for index in range(rows):
        kind = ["pear", "apple", "fig"][index % 3]
        weight, width = (torch.randn(2, generator=generator) + index % 3).tolist()
        lines.append(delimiter.join([f"{weight:.3f}", f"{width:.3f}", kind]))
    path.write_text("\n".join(lines) + "\n")
    return path


def test_csv_with_string_labels_trains_and_saves_the_mapping(tmp_path):
    write_fruit(tmp_path / "fruit.csv")
    run_dir = train_ok(
        write_config(tmp_path, config({"name": "csv", "path": "fruit.csv", "target": "kind"})),
        tmp_path / "runs",
    )
    described = json.loads((run_dir / "data.json").read_text())
    assert described["class_names"] == ["apple", "fig", "pear"]  # sorted
    recorded = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert recorded["model"]["in_features"] == 2 and recorded["model"]["out_features"] == 3
    assert recorded["loss"]["name"] == "cross_entropy"


def test_csv_without_header_and_with_another_delimiter(tmp_path):
    write_fruit(tmp_path / "fruit.csv", delimiter=";", header=False)
    data = {"name": "csv", "path": "fruit.csv", "target": 2, "features": [0, 1]}
    run_dir = train_ok(write_config(tmp_path, config(data)), tmp_path / "runs")
    assert json.loads((run_dir / "data.json").read_text())["train_samples"] == 60


def test_csv_regression_target(tmp_path):
    lines = ["a,b,price"] + [f"{i},{i % 7},{i * 1.5 + 0.25}" for i in range(40)]
    (tmp_path / "prices.csv").write_text("\n".join(lines))
    run_dir = train_ok(
        write_config(tmp_path, config({"name": "csv", "path": "prices.csv", "target": "price"})),
        tmp_path / "r",
    )
    recorded = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert recorded["loss"]["name"] == "mse" and recorded["model"]["out_features"] == 1


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"path": "nope.csv", "target": "kind"}, "no such file"),
        ({"path": "fruit.csv", "target": "knd"}, "did you mean 'kind'"),
        ({"path": "fruit.csv", "target": 7}, "column 7 does not exist"),
        ({"path": "fruit.csv", "target": "weight"}, "column 'kind' has 'pear' on line 2, not a number"),
        ({"path": "fruit.csv", "target": "kind", "task": "regression"}, "not a number"),
        ({"path": "fruit.csv", "target": "kind", "features": ["kind"]}, "cannot also be a feature"),
    ],
)
def test_csv_errors(tmp_path, data, message):
    write_fruit(tmp_path / "fruit.csv")
    assert message in config_error(invoke("check", write_config(tmp_path, config({"name": "csv", **data}))))


def write_idx(path: Path, array: torch.Tensor, compress: bool = False) -> Path:
    codes = {torch.uint8: 0x08, torch.int32: 0x0C}
    header = bytes([0, 0, codes[array.dtype], array.dim()]) + struct.pack(f">{array.dim()}I", *array.shape)
    body = array.numpy().astype(">i4" if array.dtype == torch.int32 else "u1").tobytes()
    (gzip.open if compress else open)(path, "wb").write(header + body)
    return path


@pytest.fixture
def idx_files(tmp_path):
    generator = torch.Generator().manual_seed(0)
    labels = torch.arange(64, dtype=torch.uint8) % 4
    images = (torch.rand(64, 6, 6, generator=generator) * 60).to(torch.uint8)
    images[torch.arange(64), 1 + labels.long(), 2] = 250  # a learnable mark per class
    write_idx(tmp_path / "images.idx.gz", images, compress=True)
    write_idx(tmp_path / "labels.idx", labels)
    return tmp_path


@pytest.mark.parametrize("model", [{"name": "mlp", "hidden": [16]}, {"name": "cnn", "channels": [4]}])
def test_idx_files_train_with_mlp_and_cnn(idx_files, model):
    data = {"name": "idx", "images": "images.idx.gz", "labels": "labels.idx", "val_fraction": 0.25}
    run_dir = train_ok(
        write_config(idx_files, config(data, model=model, train={"epochs": 15})), idx_files / "runs"
    )
    recorded = yaml.safe_load((run_dir / "config.yaml").read_text())
    if model["name"] == "cnn":
        assert recorded["model"]["input_shape"] == [1, 6, 6]
    else:
        assert recorded["model"]["in_features"] == 36
    assert read_summary(run_dir)["best_val_accuracy"] > 0.5


def test_idx_pixels_are_scaled_to_unit_range(idx_files):
    spec = resolve_config(
        RawConfig(config({"name": "idx", "images": "images.idx.gz", "labels": "labels.idx"}), idx_files, "x")
    )
    loaded = load_data(spec.data, 0)
    assert loaded.train.inputs.shape == (64, 1, 6, 6)
    assert float(loaded.train.inputs.max()) == pytest.approx(250 / 255)


def test_idx_errors(idx_files):
    (idx_files / "corrupt.idx").write_bytes(
        bytes([0, 0, 8, 3]) + struct.pack(">3I", 64, 28, 28) + b"\0" * 100
    )
    write_idx(idx_files / "few.idx", torch.zeros(10, dtype=torch.uint8))
    (idx_files / "text.idx").write_text("hello")
    cases = [
        ({"images": "corrupt.idx", "labels": "labels.idx"}, "corrupt IDX header"),
        ({"images": "images.idx.gz", "labels": "few.idx"}, "has 10 labels but"),
        ({"images": "text.idx", "labels": "labels.idx"}, "is not an IDX file"),
        ({"images": "missing.idx", "labels": "labels.idx"}, "no such file"),
    ]
    for data, message in cases:
        path = write_config(idx_files, config({"name": "idx", **data}))
        assert message in config_error(invoke("check", path)), data


def test_validation_split_is_seeded_and_disjoint(tmp_path):
    torch.save({"x": torch.arange(100.0).unsqueeze(1), "y": torch.arange(100) % 2}, tmp_path / "d.pt")
    data = {"name": "tensors", "path": "d.pt", "val_fraction": 0.2}
    spec = resolve_config(RawConfig(config(data), tmp_path, "x"))
    first, again, other = load_data(spec.data, 0), load_data(spec.data, 0), load_data(spec.data, 1)
    train_ids = set(first.train.inputs.flatten().tolist())
    val_ids = set(first.val.inputs.flatten().tolist())
    assert len(val_ids) == 20 and len(train_ids) == 80 and not train_ids & val_ids
    assert train_ids | val_ids == set(range(100))
    assert torch.equal(first.val.inputs, again.val.inputs)
    assert not torch.equal(first.val.inputs, other.val.inputs)


def test_normalization_uses_training_statistics_only(tmp_path):
    torch.save({"x": torch.arange(100.0).unsqueeze(1) ** 2, "y": torch.arange(100) % 2}, tmp_path / "d.pt")
    data = {"name": "tensors", "path": "d.pt", "val_fraction": 0.3, "normalize": True}
    run_dir = train_ok(write_config(tmp_path, config(data)), tmp_path / "runs")
    stats = json.loads((run_dir / "data.json").read_text())["normalization"]
    spec = resolve_config(RawConfig(config({**data, "normalize": False}), tmp_path, "x"))
    raw = load_data(spec.data, 0)
    assert stats["mean"] == pytest.approx([float(raw.train.inputs.mean())])
    assert stats["mean"] != pytest.approx([float(torch.arange(100.0).pow(2).mean())])
    normalized = load_data(resolve_config(RawConfig(config(data), tmp_path, "x")).data, 0)
    assert float(normalized.train.inputs.mean()) == pytest.approx(0, abs=1e-5)
    assert float(normalized.train.inputs.std(unbiased=False)) == pytest.approx(1, abs=1e-5)
    assert float(normalized.val.inputs.mean()) != pytest.approx(0, abs=1e-3)  # not its own statistics


def test_validation_metrics_equal_a_hand_computation(tmp_path):
    generator = torch.Generator().manual_seed(3)
    torch.save(
        {"x": torch.randn(80, 5, generator=generator), "y": torch.randint(0, 3, (80,), generator=generator)},
        tmp_path / "t.pt",
    )
    torch.save(
        {"x": torch.randn(30, 5, generator=generator), "y": torch.randint(0, 3, (30,), generator=generator)},
        tmp_path / "v.pt",
    )
    data = {"name": "tensors", "path": "t.pt", "val": {"path": "v.pt"}}
    spec = resolve_config(
        RawConfig(config(data, model={"name": "mlp", "hidden": [8], "dropout": 0.5}), tmp_path, "x")
    )
    session = build_session(spec)
    epochs = [record for record in run_training(session) if isinstance(record, EpochRecord)]
    validation = torch.load(tmp_path / "v.pt")
    session.model.eval()  # dropout off, as optcli evaluates
    with torch.no_grad():
        logits = session.model(validation["x"])
    expected_loss = torch.nn.functional.cross_entropy(logits, validation["y"]).item()
    expected_accuracy = (logits.argmax(1) == validation["y"]).float().mean().item()
    assert epochs[-1].val_loss == pytest.approx(expected_loss, rel=1e-6)
    assert epochs[-1].val_accuracy == pytest.approx(expected_accuracy)


def test_val_and_test_files_keep_the_training_datasets_arguments(tmp_path):
    write_fruit(tmp_path / "train.csv")
    lines = (tmp_path / "train.csv").read_text().splitlines()
    (tmp_path / "val.csv").write_text(
        "\n".join([lines[0], *[line for line in lines[1:] if "fig" not in line][:10]]) + "\n"
    )
    (tmp_path / "test.csv").write_text("\n".join(lines[:13]) + "\n")
    data = {
        "name": "csv",
        "path": "train.csv",
        "target": "kind",
        "val": {"path": "val.csv"},
        "test": {"path": "test.csv"},
    }
    run_dir = train_ok(write_config(tmp_path, config(data)), tmp_path / "runs")
    summary = read_summary(run_dir)
    assert {"final_val_loss", "final_val_accuracy", "best_val_loss", "best_val_accuracy"} <= set(summary)
    assert summary["test_loss"] is not None and summary["test_accuracy"] is not None
    epochs = read_csv(run_dir / "epochs.csv")
    assert list(epochs[0]) == ["epoch", "step", "train_loss", "lr", "elapsed_s", "val_loss", "val_accuracy"]
    assert summary["final_val_loss"] == float(epochs[-1]["val_loss"])
    # val.csv has no fig: its labels (apple, pear) are renumbered as the training data's (apple, fig, pear)
    loaded = load_data(resolve_config(RawConfig(config(data), tmp_path, "x")).data, 0)
    assert set(loaded.val.targets.tolist()) == {0, 2}


def test_a_validation_label_the_training_data_lacks(tmp_path):
    write_fruit(tmp_path / "train.csv")
    (tmp_path / "val.csv").write_text("weight,width,kind\n1,2,kiwi\n")
    data = {"name": "csv", "path": "train.csv", "target": "kind", "val": {"path": "val.csv"}}
    assert "labels ['kiwi'] do not appear" in config_error(
        invoke("check", write_config(tmp_path, config(data)))
    )


def test_early_stopping_fires_and_says_why(tmp_path):
    stopping = {"monitor": "train_loss", "patience": 2, "min_delta": 10.0}
    cfg = config(
        {"name": "teacher", "samples": 64, "features": 4, "classes": 2},
        train={"epochs": 20, "early_stopping": stopping},
    )
    run_dir = train_ok(write_config(tmp_path, cfg), tmp_path / "runs")
    summary = read_summary(run_dir)
    assert summary["epochs"] == 3 and len(read_csv(run_dir / "epochs.csv")) == 3
    assert summary["stopped_early"]["epoch"] == 3
    assert "train_loss did not improve by more than 10 for 2 epochs" in summary["stopped_early"]["reason"]


def test_plateau_and_early_stopping_follow_validation_by_default(tmp_path):
    data = {"name": "teacher", "samples": 64, "features": 4, "classes": 2, "val_fraction": 0.25}
    cfg = config(data, scheduler={"name": "plateau"}, train={"epochs": 2, "early_stopping": {}})
    result = invoke("check", write_config(tmp_path, cfg), "--resolved")
    recorded = yaml.safe_load(result.stdout.split("\nok:")[0])
    assert recorded["scheduler"]["monitor"] == "val_loss" and recorded["scheduler"]["mode"] == "min"
    assert recorded["train"]["early_stopping"]["monitor"] == "val_loss"
    cfg["scheduler"]["monitor"] = "val_accuracy"
    result = invoke("check", write_config(tmp_path, cfg), "--resolved")
    assert yaml.safe_load(result.stdout.split("\nok:")[0])["scheduler"]["mode"] == "max"


def test_plateau_steps_with_the_validation_loss(tmp_path):
    data = {"name": "teacher", "samples": 256, "features": 4, "classes": 2, "val_fraction": 0.25}
    plateau = {"name": "plateau", "patience": 0, "factor": 0.5, "threshold": 0.3}
    spec = resolve_config(RawConfig(config(data, scheduler=plateau, train={"epochs": 8}), tmp_path, "x"))
    epochs = [r for r in run_training(build_session(spec)) if isinstance(r, EpochRecord)]
    # torch's own scheduler, stepped by hand with the validation losses the run logged
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.01)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, patience=0, factor=0.5, threshold=0.3)
    expected = []
    for epoch in epochs:
        expected.append(optimizer.param_groups[0]["lr"])
        scheduler.step(epoch.val_loss)
    assert [epoch.lr for epoch in epochs] == expected
    assert epochs[-1].lr < 0.01  # it did reduce


def test_validation_metrics_need_validation_data(tmp_path):
    cfg = config(
        {"name": "random", "samples": 32},
        scheduler={"name": "plateau", "monitor": "val_loss"},
        train={"eval_every": 2},
    )
    message = config_error(invoke("check", write_config(tmp_path, cfg)))
    assert "scheduler.monitor: 'val_loss' is not a metric" in message and "train.eval_every" in message


def test_eval_every_writes_evals_csv(tmp_path):
    data = {"name": "teacher", "samples": 64, "features": 4, "classes": 2, "val_fraction": 0.25}
    run_dir = train_ok(
        write_config(tmp_path, config(data, train={"epochs": 2, "eval_every": 1})), tmp_path / "runs"
    )
    evals = read_csv(run_dir / "evals.csv")
    assert [int(row["step"]) for row in evals] == [1, 2, 4, 5]  # the epoch ends (3, 6) are in epochs.csv
    assert all(0 <= float(row["val_accuracy"]) <= 1 for row in evals)


def test_sklearn_datasets_train(tmp_path):
    for name in ("iris", "wine", "breast_cancer", "digits"):
        cfg = config({"name": name, "val_fraction": 0.2, "normalize": True}, train={"epochs": 1})
        run_dir = train_ok(write_config(tmp_path, cfg, f"{name}.yaml"), tmp_path / name)
        assert read_summary(run_dir)["final_val_accuracy"] is not None


def test_without_scikit_learn_the_message_says_how_to_install_it(tmp_path, monkeypatch):
    from optcli.data import scikit_learn as data_sklearn

    data_sklearn._load.cache_clear()
    monkeypatch.setitem(sys.modules, "sklearn", None)
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)
    message = config_error(invoke("check", write_config(tmp_path, config({"name": "iris"}))))
    assert "pip install 'optcli[sklearn]'" in message
    data_sklearn._load.cache_clear()


def test_digits_adam_reaches_95_percent(tmp_path):
    run_dir = train_ok(REPO / "configs" / "digits_adam.yaml", tmp_path / "runs")
    summary = read_summary(run_dir)
    assert summary["final_val_accuracy"] >= 0.95


def test_compare_ranks_by_validation_loss_by_default(tmp_path):
    base = config({"name": "teacher", "samples": 128, "features": 4, "classes": 2, "val_fraction": 0.25})
    write_config(tmp_path, base, "base.yaml")
    path = write_config(
        tmp_path,
        {
            "base": "base.yaml",
            "seeds": 2,
            "runs": {"adam": {}, "sgd": {"optimizer": {"name": "sgd", "lr": 0.1}}},
        },
        "c.yaml",
    )
    result = invoke("compare", path, "--out", tmp_path / "out")
    assert_clean_exit(result, 0)
    directory = next((tmp_path / "out").glob("compare-c/*"))
    assert json.loads((directory / "summary.json").read_text())["metric"] == "val_loss"
    results = read_csv(directory / "results.csv")
    assert {"val_loss", "val_accuracy", "best_val_loss", "best_val_accuracy"} <= set(results[0])
    for row in results:
        summary = read_summary(directory / f"{row['arm']}-seed{row['seed']}")
        assert float(row["val_loss"]) == summary["final_val_loss"]
    accuracy = invoke("compare", path, "--out", tmp_path / "acc", "--metric", "val_accuracy")
    assert "highest validation accuracy" in accuracy.stdout
    assert column(read_csv(next((tmp_path / "acc").glob("compare-c/*")) / "summary.csv"), "mean") == sorted(
        column(read_csv(next((tmp_path / "acc").glob("compare-c/*")) / "summary.csv"), "mean"), reverse=True
    )


@pytest.mark.parametrize(("cell", "column_name"), [("nan", "weight"), ("inf", "width")])
def test_non_finite_csv_features_are_config_errors_naming_column_and_line(tmp_path, cell, column_name):
    path = write_fruit(tmp_path / "fruit.csv")
    lines = path.read_text().splitlines()
    cells = lines[5].split(",")
    cells[0 if column_name == "weight" else 1] = cell
    lines[5] = ",".join(cells)
    path.write_text("\n".join(lines) + "\n")
    result = invoke(
        "train",
        write_config(tmp_path, config({"name": "csv", "path": "fruit.csv", "target": "kind"})),
        "--out",
        tmp_path / "runs",
    )
    message = config_error(result)
    assert f"column '{column_name}' has {cell} on line 6" in message and "lower" not in message
    assert not (tmp_path / "runs").exists()  # found before anything was written


def test_a_non_finite_csv_target_is_a_config_error(tmp_path):
    rows = ["x,y", *(f"{i},{i * 0.5}" for i in range(20)), "20,nan"]
    (tmp_path / "r.csv").write_text("\n".join(rows) + "\n")
    data = {"name": "csv", "path": "r.csv", "target": "y", "task": "regression"}
    message = config_error(invoke("check", write_config(tmp_path, config(data))))
    assert "target: line 22" in message and "'nan'" in message


@pytest.mark.parametrize("key", ["x", "y"])
def test_non_finite_values_in_a_tensor_file_are_config_errors(tmp_path, key):
    tensors = {"x": torch.randn(32, 3), "y": torch.randn(32, 1)}
    tensors[key][7, 0] = float("nan")
    torch.save(tensors, tmp_path / "d.pt")
    data = {"name": "tensors", "path": "d.pt"}
    message = config_error(invoke("train", write_config(tmp_path, config(data)), "--out", tmp_path / "runs"))
    assert f"{key} in" in message and "first in row 7" in message
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize(
    ("values", "note"),
    [
        (range(30), "regression: target 'y' has 30 distinct integer values; set data.task: classification"),
        ([0, 1, 2, 3] * 8, "classification: target 'y' has 4 distinct integer values"),
        ([0.5 * i for i in range(32)], "regression: target 'y' holds non-integer numbers"),
    ],
)
def test_the_task_guess_is_never_silent(tmp_path, values, note):
    rows = ["x,y", *(f"{i % 7},{value}" for i, value in enumerate(values))]
    (tmp_path / "t.csv").write_text("\n".join(rows) + "\n")
    path = write_config(tmp_path, config({"name": "csv", "path": "t.csv", "target": "y"}))
    checked = invoke("check", path)
    assert_clean_exit(checked, 0)
    assert checked.stderr.startswith(f"note: data: {note}")
    trained = invoke("train", path, "--out", tmp_path / "runs", "--quiet")
    assert trained.stderr.startswith(f"note: data: {note}")  # the run's first line
    stated = write_config(
        tmp_path, config({"name": "csv", "path": "t.csv", "target": "y", "task": "regression"}), "s.yaml"
    )
    assert "note:" not in invoke("check", stated).stderr


def test_the_test_data_judges_the_best_epochs_weights_by_default(tmp_path):
    # A small task and a wide model: the validation loss bottoms out, then rises (overfitting).
    data = {"name": "teacher", "samples": 96, "features": 8, "classes": 3, "val_fraction": 0.25, "test": {}}
    sections = {"model": {"name": "mlp", "hidden": [256]}, "train": {"epochs": 40}}
    best_run = train_ok(write_config(tmp_path, config(data, **sections)), tmp_path / "best")
    summary = read_summary(best_run)
    assert summary["best_val_loss_epoch"] < summary["epochs"]  # the best epoch is not the last
    assert summary["test_on"] == "best" and summary["test_weights_epoch"] == summary["best_val_loss_epoch"]
    last = {**sections, "train": {"epochs": 40, "test_on": "last"}}
    last_run = train_ok(write_config(tmp_path, config(data, **last), "last.yaml"), tmp_path / "last")
    last_summary = read_summary(last_run)
    assert last_summary["test_on"] == "last" and last_summary["test_weights_epoch"] == 40
    assert last_summary["test_loss"] != summary["test_loss"]  # the same run otherwise, other weights judged
    assert last_summary["final_val_loss"] == summary["final_val_loss"]


def test_test_on_best_needs_validation_data(tmp_path):
    data = {"name": "teacher", "samples": 96, "features": 8, "classes": 3, "test": {}}
    message = config_error(
        invoke("check", write_config(tmp_path, config(data, train={"epochs": 2, "test_on": "best"})))
    )
    assert "train.test_on: best is chosen by the validation data" in message
    plain = train_ok(write_config(tmp_path, config(data), "p.yaml"), tmp_path / "runs")
    assert read_summary(plain)["test_on"] == "last"


def test_test_fraction_splits_a_seeded_test_set_disjoint_from_validation(tmp_path):
    data = {
        "name": "teacher",
        "samples": 100,
        "features": 6,
        "classes": 3,
        "val_fraction": 0.2,
        "test_fraction": 0.3,
    }
    spec = resolve_config(RawConfig(config(data), tmp_path, "x"))
    loaded = load_data(spec.data, 0)
    assert (len(loaded.train), len(loaded.val), len(loaded.test)) == (50, 20, 30)
    rows = [{tuple(row.tolist()) for row in part.inputs} for part in (loaded.train, loaded.val, loaded.test)]
    assert not (rows[0] & rows[1]) and not (rows[0] & rows[2]) and not (rows[1] & rows[2])
    again = load_data(spec.data, 0)
    assert torch.equal(again.test.inputs, loaded.test.inputs)  # seeded
    run_dir = train_ok(write_config(tmp_path, config(data)), tmp_path / "runs")
    summary = read_summary(run_dir)
    assert (
        summary["test_loss"] is not None
        and json.loads((run_dir / "data.json").read_text())["test_samples"] == 30
    )
    both = config({**data, "test": {}})
    assert "give either test_fraction or test:" in config_error(
        invoke("check", write_config(tmp_path, both, "b.yaml"))
    )
    greedy = config({**data, "val_fraction": 0.6, "test_fraction": 0.5})
    assert "leave no training data" in config_error(invoke("check", write_config(tmp_path, greedy, "g.yaml")))


def regression_file(directory: Path) -> Path:
    generator = torch.Generator().manual_seed(4)
    x = torch.randn(120, 4, generator=generator)
    y = torch.stack([x[:, 0] - 2 * x[:, 1], x[:, 2] * 0.5 + 1], dim=1) + 0.1 * torch.randn(
        120, 2, generator=generator
    )
    torch.save({"x": x, "y": y}, directory / "r.pt")
    return directory / "r.pt"


def test_regression_reports_rmse_mae_and_r2_as_scikit_learn_computes_them(tmp_path):
    from sklearn import metrics  # the dev extra brings scikit-learn

    regression_file(tmp_path)
    data = {"name": "tensors", "path": "r.pt", "val_fraction": 0.25}
    spec = resolve_config(RawConfig(config(data), tmp_path, "x"))
    session = build_session(spec)
    epochs = [record for record in run_training(session) if isinstance(record, EpochRecord)]
    validation = load_data(spec.data, spec.seed).val
    session.model.eval()
    with torch.no_grad():
        predicted = session.model(validation.inputs).numpy()
    truth = validation.targets.numpy()
    last = epochs[-1].metrics
    assert last["val_rmse"] == pytest.approx(metrics.mean_squared_error(truth, predicted) ** 0.5, rel=1e-5)
    assert last["val_mae"] == pytest.approx(metrics.mean_absolute_error(truth, predicted), rel=1e-5)
    assert last["val_r2"] == pytest.approx(metrics.r2_score(truth, predicted), rel=1e-5)
    assert "val_accuracy" not in last


def test_regression_metrics_reach_the_files_and_rank_a_comparison(tmp_path):
    regression_file(tmp_path)
    base = config(
        {"name": "tensors", "path": "r.pt", "val_fraction": 0.25}, train={"epochs": 3, "eval_every": 4}
    )
    run = train_ok(write_config(tmp_path, base), tmp_path / "runs")
    epochs = read_csv(run / "epochs.csv")
    assert list(epochs[0])[-4:] == ["val_loss", "val_rmse", "val_mae", "val_r2"]
    assert list(read_csv(run / "evals.csv")[0]) == [
        "step",
        "epoch",
        "val_loss",
        "val_rmse",
        "val_mae",
        "val_r2",
        "elapsed_s",
    ]
    summary = read_summary(run)
    assert summary["final_val_r2"] == float(epochs[-1]["val_r2"])
    assert summary["best_val_r2"] == max(float(row["val_r2"]) for row in epochs)  # higher is better
    write_config(tmp_path, base, "base.yaml")
    arms = {"adam": {}, "slow_sgd": {"optimizer": {"name": "sgd", "lr": 0.0001}}}
    compare = write_config(
        tmp_path, {"base": "base.yaml", "seeds": [0, 1], "metric": "val_r2", "runs": arms}, "c.yaml"
    )
    result = invoke("compare", compare, "--out", tmp_path / "out")
    assert_clean_exit(result, 0)
    directory = next((tmp_path / "out").glob("compare-*/*"))
    summary_rows = read_csv(directory / "summary.csv")
    assert [row["arm"] for row in summary_rows] == ["adam", "slow_sgd"]
    assert {row["metric"] for row in summary_rows} == {"val_r2"}
    assert "best_val_r2" in read_csv(directory / "results.csv")[0]


def test_data_json_records_the_split_so_plain_torch_rebuilds_a_reported_metric(tmp_path):
    """docs/data.md's recipe: the CSV read with the csv module, the rows data.json names, the training
    split's normalization, and the last checkpoint's weights give the run's last validation loss."""
    write_fruit(tmp_path / "fruit.csv", rows=90)
    data = {"name": "csv", "path": "fruit.csv", "target": "kind", "val_fraction": 0.25}
    data.update(test_fraction=0.2, normalize=True)
    run_dir = train_ok(write_config(tmp_path, config(data)), tmp_path / "runs")
    described = json.loads((run_dir / "data.json").read_text())
    val_rows, test_rows = described["val_rows"], described["test_rows"]
    assert (len(val_rows), len(test_rows)) == (described["val_samples"], described["test_samples"])
    assert not set(val_rows) & set(test_rows) and max(val_rows + test_rows) < 90

    with (tmp_path / "fruit.csv").open() as stream:
        rows = list(csv.DictReader(stream))
    names = described["class_names"]
    x = torch.tensor([[float(row["weight"]), float(row["width"])] for row in rows])
    y = torch.tensor([names.index(row["kind"]) for row in rows])
    statistics = described["normalization"]
    x = (x - torch.tensor(statistics["mean"])) / torch.tensor(statistics["std"])
    weights = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)["model"]
    model = torch.nn.Sequential(
        torch.nn.Flatten(), torch.nn.Linear(2, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3)
    )
    model.load_state_dict(weights)
    with torch.no_grad():
        loss = torch.nn.functional.cross_entropy(model(x[val_rows]), y[val_rows]).item()
    assert loss == pytest.approx(float(read_csv(run_dir / "epochs.csv")[-1]["val_loss"]), rel=1e-6)


def _table_lines(rows: int) -> list[str]:
    generator = torch.Generator().manual_seed(3)
    values = torch.randn(rows, 3, generator=generator, dtype=torch.float64).tolist()
    return ["a,b,c,kind"] + [
        f"{a!r},{b:.6g}, {c * 1e-20!r} ,{['pear', 'fig'][index % 2]}"
        for index, (a, b, c) in enumerate(values)
    ]


@pytest.mark.parametrize(
    "change",
    ["none", "blank lines and CRLF", "a quoted cell in a late block", "an unusual number"],
)
def test_a_csv_read_in_blocks_equals_the_csv_modules_reading_cell_for_cell(tmp_path, monkeypatch, change):
    """A table of many blocks (numpy's reader takes the plain ones, the csv module the rest) gives
    the values Python's float() gives every cell, bit for bit, and the same labels."""
    import optcli.data.files as files

    monkeypatch.setattr(files, "BLOCK_BYTES", 2048)  # about 40 lines a block
    lines = _table_lines(3000)
    if change == "blank lines and CRLF":
        lines[700:700] = ["", ",,,"]
    if change == "a quoted cell in a late block":
        lines[2500] = lines[2500].replace("pear", '"pear"')
    if change == "an unusual number":
        lines[1500] = "1_000," + lines[1500].split(",", 1)[1]  # float() reads it; numpy does not
    newline = "\r\n" if change == "blank lines and CRLF" else "\n"
    path = tmp_path / "t.csv"
    path.write_text(newline.join(lines) + newline, newline="")
    loaded = files.CsvData(str(path), "kind").load(0)
    with path.open(newline="") as stream:
        rows = [row for row in csv.reader(stream) if any(cell.strip() for cell in row)][1:]
    expected = torch.tensor([[float(cell) for cell in row[:3]] for row in rows], dtype=torch.float32)
    assert torch.equal(loaded.inputs, expected)
    assert loaded.targets.tolist() == [["fig", "pear"].index(row[3].strip()) for row in rows]


def test_a_bad_cell_deep_in_a_large_csv_names_its_line_and_column(tmp_path, monkeypatch):
    import optcli.data.files as files

    monkeypatch.setattr(files, "BLOCK_BYTES", 2048)
    lines = _table_lines(3000)
    cells = lines[2222].split(",")
    cells[1] = "oops"
    lines[2222] = ",".join(cells)
    (tmp_path / "t.csv").write_text("\n".join(lines) + "\n")
    data = {"name": "csv", "path": "t.csv", "target": "kind"}
    message = config_error(invoke("check", write_config(tmp_path, config(data))))
    assert "column 'b' has 'oops' on line 2223" in message


def test_every_bad_column_of_a_csv_is_named_at_once(tmp_path):
    (tmp_path / "cells.csv").write_text("size,weight,kind\n1,2,apple\n,3,pear\n3,heavy,apple\n4,5,pear\n")
    message = config_error(
        invoke(
            "check", write_config(tmp_path, config({"name": "csv", "path": "cells.csv", "target": "kind"}))
        )
    )
    assert "2 problems:" in message
    assert (
        "column 'size' is empty on line 3" in message and "column 'weight' has 'heavy' on line 4" in message
    )


def test_a_class_that_only_the_validation_rows_hold_is_a_warning_strict_refuses(tmp_path):
    """A tiny table: with this seed val_fraction holds out the one lemon, which training never sees."""
    (tmp_path / "tiny.csv").write_text("size,weight,kind\n1,2,apple\n2,3,pear\n3,4,lemon\n4,5,apple\n")
    data = {"name": "csv", "path": "tiny.csv", "target": "kind", "val_fraction": 0.25, "batch_size": 2}
    warned = []
    for seed in range(8):
        result = invoke("check", write_config(tmp_path, {**config(data), "seed": seed}))
        assert_clean_exit(result, 0)
        if "no training row has" in result.output:
            warned.append(seed)
            assert "1 of 1 validation rows" in result.output
            strict = invoke("check", write_config(tmp_path, {**config(data), "seed": seed}), "--strict")
            assert_clean_exit(strict, 2)
    # Which row is held out follows the seed: the warning comes exactly when a lone class is.
    for seed in range(8):
        spec = resolve_config(load_config(write_config(tmp_path, {**config(data), "seed": seed})))
        _, held_out = split_rows(4, spec.data, seed)
        lone = int(held_out["val"][0]) in (1, 2)  # the pear or the lemon row (0-based)
        assert (seed in warned) == lone
    assert warned  # (the seeds above hold out a lone class at least once)
