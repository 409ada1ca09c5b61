"""Using what was trained: `optcli predict`, `optcli evaluate` and `optcli export`, on runs made the way
a user makes them (a CSV table with class names and normalization, a scikit-learn dataset, a Dataset
and a model of one's own), checked against what the run itself reported."""

from __future__ import annotations

import csv
import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy
import pytest
import torch
import yaml

from tests.conftest import (
    REPO,
    assert_clean_exit,
    config_error,
    invoke,
    read_csv,
    read_summary,
    train_ok,
    write_config,
)

FRUIT = REPO / "configs" / "data" / "fruit.csv"


@pytest.fixture(scope="module")
def fruit_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """configs/fruit_csv.yaml: string labels, normalized features, a validation split."""
    out = tmp_path_factory.mktemp("fruit")
    return train_ok(REPO / "configs" / "fruit_csv.yaml", out, "--set", "train.epochs=12", "--threads", "1")


@pytest.fixture(scope="module")
def digits_cnn_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """scikit-learn's digits (8×8 images) through the CNN, normalized, with a validation split."""
    directory = tmp_path_factory.mktemp("digits")
    config = {
        "name": "digits_cnn",
        "device": "cpu",
        "model": {"name": "cnn"},
        "data": {"name": "digits", "val_fraction": 0.2, "normalize": True, "batch_size": 64},
        "optimizer": {"name": "adam", "lr": 0.003},
        "train": {"epochs": 3, "threads": 1},
    }
    return train_ok(write_config(directory, config), directory / "runs")


@pytest.fixture(scope="module")
def regression_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A CSV regression table (a numeric target) with normalization."""
    directory = tmp_path_factory.mktemp("prices")
    generator = numpy.random.default_rng(0)
    features = generator.normal(size=(300, 3))
    target = features @ numpy.array([1.5, -2.0, 0.5]) + 0.1 * generator.normal(size=300)
    rows = [
        "size,age,rooms,price",
        *(
            ",".join(map(repr, [*row, value]))
            for row, value in zip(features.tolist(), target.tolist(), strict=True)
        ),
    ]
    (directory / "prices.csv").write_text("\n".join(rows) + "\n")
    config = {
        "name": "prices",
        "device": "cpu",
        "model": {"name": "mlp", "hidden": [16]},
        "data": {
            "name": "csv",
            "path": "prices.csv",
            "target": "price",
            "val_fraction": 0.25,
            "normalize": True,
            "batch_size": 32,
        },
        "optimizer": {"name": "adam", "lr": 0.01},
        "train": {"epochs": 5, "threads": 1},
    }
    return train_ok(write_config(directory, config), directory / "runs")


def val_rows_csv(run_dir: Path, source: Path, destination: Path, keep_target: bool = True) -> Path:
    """The run's validation rows of `source`, as a user rebuilds them from data.json's val_rows."""
    rows = list(csv.reader(source.open()))
    header, body = rows[0], rows[1:]
    chosen = [body[index] for index in json.loads((run_dir / "data.json").read_text())["val_rows"]]
    width = len(header) if keep_target else len(header) - 1
    with destination.open("w", newline="") as stream:
        csv.writer(stream).writerows([row[:width] for row in [header, *chosen]])
    return destination


def epoch_row(run_dir: Path, epoch: int) -> dict[str, str]:
    return next(row for row in read_csv(run_dir / "epochs.csv") if int(row["epoch"]) == epoch)


def user_model_run(directory: Path, forward: str) -> Path:
    """A run of a linear model of one's own, `nets.py:Net`, whose forward is `forward` (its body)."""
    (directory / "nets.py").write_text(
        "import torch\n\nclass Net(torch.nn.Module):\n    def __init__(self, in_features: int, out_features: int):\n"
        "        super().__init__()\n        self.layer = torch.nn.Linear(in_features, out_features)\n\n"
        f"    def forward(self, inputs):\n{forward}"
    )
    data = {
        "name": "random",
        "samples": 32,
        "features": 3,
        "classes": 2,
        "batch_size": 16,
        "val_fraction": 0.25,
    }
    config = {
        "device": "cpu",
        "model": {"name": "nets.py:Net"},
        "data": data,
        "optimizer": "sgd",
        "train": {"epochs": 1},
    }
    return train_ok(write_config(directory, config), directory / "runs")


# --- predict ---------------------------------------------------------------------------------------------


def test_predict_on_the_validation_rows_gives_the_runs_validation_accuracy_exactly(fruit_run, tmp_path):
    """Normalization with the training split's statistics and class names mapped back: the predicted
    names agree with the targets as often as the best epoch's val_accuracy says, to the last digit."""
    rows = val_rows_csv(fruit_run, FRUIT, tmp_path / "val.csv")
    result = invoke("predict", fruit_run, rows, "--out", tmp_path / "p.csv")
    assert_clean_exit(result, 0)
    predicted = read_csv(tmp_path / "p.csv")
    assert list(predicted[0]) == ["prediction", "p_apple", "p_lemon", "p_orange", "p_pear", "target"]
    accuracy = sum(row["prediction"] == row["target"] for row in predicted) / len(predicted)
    best_epoch = read_summary(fruit_run)["best_val_loss_epoch"]  # best.pt follows val_loss
    assert accuracy == float(epoch_row(fruit_run, best_epoch)["val_accuracy"])
    for row in predicted:  # probabilities that sum to one, the prediction the likeliest
        probabilities = {name: float(row[f"p_{name}"]) for name in ("apple", "lemon", "orange", "pear")}
        assert math.isclose(sum(probabilities.values()), 1.0, rel_tol=1e-9)
        assert row["prediction"] == max(probabilities, key=probabilities.__getitem__)


def test_predict_without_the_target_column_and_with_columns_reordered(fruit_run, tmp_path):
    with_target = val_rows_csv(fruit_run, FRUIT, tmp_path / "val.csv")
    invoke("predict", fruit_run, with_target, "--out", tmp_path / "a.csv")
    table = list(csv.reader(with_target.open()))
    order = [3, 0, 2, 1]  # the features in another order, no target
    with (tmp_path / "reordered.csv").open("w", newline="") as stream:
        csv.writer(stream).writerows([[row[index] for index in order] for row in table])
    result = invoke("predict", fruit_run, tmp_path / "reordered.csv", "--out", tmp_path / "b.csv")
    assert_clean_exit(result, 0)
    first, second = read_csv(tmp_path / "a.csv"), read_csv(tmp_path / "b.csv")
    assert "target" not in second[0]
    assert [{key: row[key] for key in second[0]} for row in first] == second


def test_a_large_input_is_read_in_blocks_and_batched_as_a_small_one(fruit_run, tmp_path, monkeypatch):
    """An input of many blocks (the reader's, cut small here) gives the rows a single block gives."""
    import optcli.data.files as files

    rows = val_rows_csv(fruit_run, FRUIT, tmp_path / "val.csv")
    table = rows.read_text().splitlines()
    (tmp_path / "many.csv").write_text("\n".join([table[0], *(table[1:] * 40)]) + "\n")  # 2,400 rows
    invoke(
        "predict", fruit_run, tmp_path / "many.csv", "--out", tmp_path / "whole.csv", "--batch-size", "100"
    )
    monkeypatch.setattr(files, "BLOCK_BYTES", 512)  # about 25 rows a block: batches span blocks
    result = invoke(
        "predict", fruit_run, tmp_path / "many.csv", "--out", tmp_path / "blocks.csv", "--batch-size", "100"
    )
    assert_clean_exit(result, 0)
    assert (tmp_path / "whole.csv").read_bytes() == (tmp_path / "blocks.csv").read_bytes()
    assert len(read_csv(tmp_path / "blocks.csv")) == 2400


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ("drop hue_deg", "missing hue_deg"),
        ("add colour", "not the run's: colour"),
        ("nan", "INPUT: column 'sugar_pct' has nan on line 3"),
        ("text", "INPUT: column 'weight_g' has 'heavy' on line 2, not a number"),
        ("short row", "INPUT: line 4 of"),
        ("twice", "has the column weight_g more than once"),
    ],
)
def test_bad_input_is_one_clear_message_and_no_predictions_file(fruit_run, tmp_path, change, message):
    table = [row[:4] for row in csv.reader(FRUIT.open())][:10]
    if change == "drop hue_deg":
        table = [row[:2] + row[3:] for row in table]
    if change == "add colour":
        table = [[*row, "colour" if index == 0 else "red"] for index, row in enumerate(table)]
    if change == "nan":
        table[2][3] = "nan"
    if change == "text":
        table[1][0] = "heavy"
    if change == "short row":
        table[3] = table[3][:2]
    if change == "twice":
        table = [[*row, row[0]] for row in table]
    with (tmp_path / "bad.csv").open("w", newline="") as stream:
        csv.writer(stream).writerows(table)
    result = invoke("predict", fruit_run, tmp_path / "bad.csv", "--out", tmp_path / "p.csv")
    assert message in config_error(result)
    assert not (tmp_path / "p.csv").exists() and not list(tmp_path.glob(".p.csv*"))


def test_predict_refuses_a_set_for_a_file_input_and_names_a_missing_folder(fruit_run, tmp_path):
    message = config_error(
        invoke("predict", fruit_run, FRUIT, "--out", tmp_path / "p.csv", "--set", "data.bogus=1")
    )
    assert "--set data.bogus=1: sets a Dataset input's arguments" in message
    result = invoke("predict", fruit_run, FRUIT, "--out", tmp_path / "no" / "such" / "p.csv")
    assert_clean_exit(result, 1)
    assert f"cannot read or write {tmp_path / 'no' / 'such'}: no such folder" in result.stderr


def test_predict_a_regression_gives_the_runs_validation_rmse(regression_run, tmp_path):
    source = Path(yaml.safe_load((regression_run / "config.yaml").read_text())["data"]["path"])
    rows = val_rows_csv(regression_run, source, tmp_path / "val.csv")
    assert_clean_exit(invoke("predict", regression_run, rows, "--out", tmp_path / "p.csv"), 0)
    predicted = read_csv(tmp_path / "p.csv")
    assert list(predicted[0]) == ["prediction", "target"]
    errors = [float(row["prediction"]) - float(numpy.float32(row["target"])) for row in predicted]
    rmse = math.sqrt(math.fsum(error * error for error in errors) / len(errors))
    best_epoch = read_summary(regression_run)["best_val_loss_epoch"]
    assert rmse == pytest.approx(float(epoch_row(regression_run, best_epoch)["val_rmse"]), rel=1e-9)


def test_predict_a_scikit_learn_run_from_an_npz_of_its_samples(digits_cnn_run, tmp_path):
    """digits: the user saves the validation images (as the data section reads them: 1×8×8, pixels
    in [0, 1]) and their labels; the predictions score the run's last validation accuracy."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    rows = json.loads((digits_cnn_run / "data.json").read_text())["val_rows"]
    images = (digits.images.reshape(-1, 1, 8, 8) / 16.0).astype(numpy.float32)[rows]
    numpy.savez(tmp_path / "val.npz", x=images, y=digits.target[rows])
    result = invoke(
        "predict", digits_cnn_run, tmp_path / "val.npz", "--checkpoint", "last", "--out", tmp_path / "p.csv"
    )
    assert_clean_exit(result, 0)
    predicted = read_csv(tmp_path / "p.csv")
    accuracy = sum(row["prediction"] == row["target"] for row in predicted) / len(predicted)
    assert accuracy == read_summary(digits_cnn_run)["final_val_accuracy"]


@pytest.fixture(scope="module")
def waves_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """configs/waves.yaml: a Dataset and a model of one's own (1-d convolutions, BatchNorm), with a
    callable of the user's added that gives the validation waves alone."""
    directory = tmp_path_factory.mktemp("waves")
    for name in ("waves.yaml", "waves.py"):
        shutil.copy(REPO / "configs" / name, directory / name)
    shutil.copytree(REPO / "configs" / "data" / "waves", directory / "data" / "waves")
    with (directory / "waves.py").open("a") as stream:
        stream.write('\n\ndef validation_waves(root: str) -> Waves:\n    return make_datasets(root)["val"]\n')
    settings = ["train.epochs=3", "data.num_workers=0", "data.persistent_workers=false", "train.threads=1"]
    return train_ok(
        directory / "waves.yaml", directory / "runs", *(f"--set={setting}" for setting in settings)
    )


def test_predict_a_scikit_learn_run_from_a_csv_of_flattened_images(digits_cnn_run, tmp_path):
    """Any run but a CSV one reads a table's columns as its features in order (64 pixels for an 8×8
    image), a header of any names skipped, the target after them."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    rows = json.loads((digits_cnn_run / "data.json").read_text())["val_rows"]
    with (tmp_path / "val.csv").open("w", newline="") as stream:
        writer = csv.writer(stream)
        writer.writerow([*(f"pixel{index}" for index in range(64)), "digit"])
        writer.writerows(
            [*(repr(value / 16.0) for value in digits.data[row].tolist()), digits.target[row]] for row in rows
        )
    result = invoke(
        "predict", digits_cnn_run, tmp_path / "val.csv", "--checkpoint", "last", "--out", tmp_path / "p.csv"
    )
    assert_clean_exit(result, 0)
    predicted = read_csv(tmp_path / "p.csv")
    accuracy = sum(row["prediction"] == row["target"] for row in predicted) / len(predicted)
    assert accuracy == read_summary(digits_cnn_run)["final_val_accuracy"]


def test_predict_with_a_dataset_of_ones_own(waves_run, tmp_path):
    """The user's callable giving the validation waves, its root as a --set argument: the predictions
    score the run's last validation accuracy."""
    callable_name = f"{waves_run.parents[2] / 'waves.py'}:validation_waves"
    result = invoke(
        "predict",
        waves_run,
        callable_name,
        "--checkpoint",
        "last",
        "--set",
        "data.root=data/waves",
        "--out",
        tmp_path / "p.csv",
    )
    assert_clean_exit(result, 0)
    predicted = read_csv(tmp_path / "p.csv")
    accuracy = sum(row["prediction"] == row["target"] for row in predicted) / len(predicted)
    assert accuracy == read_summary(waves_run)["final_val_accuracy"]
    assert "the run reads a Dataset of yours" in config_error(
        invoke("predict", waves_run, tmp_path / "p.csv")
    )


# --- evaluate --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("checkpoint", ["best", "last"])
def test_evaluate_equals_what_the_run_reported(fruit_run, tmp_path, checkpoint):
    result = invoke("evaluate", fruit_run, "--checkpoint", checkpoint, "--out", tmp_path / "e.json")
    assert_clean_exit(result, 0)
    metrics = json.loads((tmp_path / "e.json").read_text())["metrics"]
    summary = read_summary(fruit_run)
    reported = ("loss", "accuracy", "f1_macro")  # configs/fruit_csv.yaml's metrics: [accuracy, f1]
    if checkpoint == "last":
        expected = {name: summary[f"final_val_{name}"] for name in reported}
    else:
        assert metrics["loss"] == summary["best_val_loss"]
        row = epoch_row(fruit_run, summary["best_val_loss_epoch"])
        expected = {name: float(row[f"val_{name}"]) for name in reported}
    assert metrics == expected


def test_evaluate_on_new_data_maps_its_labels_by_the_runs_class_names(fruit_run, tmp_path):
    """New data holding only some of the classes, in another order: judged with the run's names."""
    rows = val_rows_csv(fruit_run, FRUIT, tmp_path / "val.csv")
    table = list(csv.reader(rows.open()))
    kept = [table[0], *(row for row in table[1:] if row[4] in ("pear", "lemon"))]
    with (tmp_path / "some.csv").open("w", newline="") as stream:
        csv.writer(stream).writerows(kept)
    result = invoke(
        "evaluate", fruit_run, tmp_path / "some.csv", "--checkpoint", "last", "--out", tmp_path / "e.json"
    )
    assert_clean_exit(result, 0)
    invoke("predict", fruit_run, tmp_path / "some.csv", "--checkpoint", "last", "--out", tmp_path / "p.csv")
    predicted = read_csv(tmp_path / "p.csv")
    accuracy = sum(row["prediction"] == row["target"] for row in predicted) / len(predicted)
    assert json.loads((tmp_path / "e.json").read_text())["metrics"]["accuracy"] == accuracy


def test_evaluate_a_split_the_run_does_not_have(fruit_run):
    assert "--split test: the run has no test data" in config_error(
        invoke("evaluate", fruit_run, "--split", "test")
    )


def test_a_run_without_checkpoints_says_so(tmp_path):
    config = {
        "device": "cpu",
        "model": {"name": "linear"},
        "data": {"name": "random", "samples": 32, "features": 3, "classes": 2, "batch_size": 16},
        "optimizer": "sgd",
        "train": {"epochs": 1, "checkpoint": False},
    }
    run_dir = train_ok(write_config(tmp_path, config), tmp_path / "runs")
    for command in (
        ["predict", run_dir, "x.csv"],
        ["evaluate", run_dir],
        ["export", run_dir, "--format", "torchscript"],
    ):
        message = config_error(invoke(*command))
        assert (
            "has no checkpoints/best.pt: the run never finished a checkpoint (train.checkpoint: false)"
            in message
        )


def test_a_run_whose_model_code_moved_or_changed_says_so(tmp_path):
    run_dir = user_model_run(tmp_path, "        return self.layer(inputs)\n")
    with (tmp_path / "nets.py").open("a") as stream:
        stream.write("# edited\n")
    changed = invoke("evaluate", run_dir, "--out", tmp_path / "e.json")
    assert_clean_exit(changed, 0)
    assert "nets.py has changed since the run" in changed.stderr
    (tmp_path / "nets.py").rename(tmp_path / "moved.py")
    assert "has moved or been deleted since the run" in config_error(invoke("evaluate", run_dir))


# --- export ----------------------------------------------------------------------------------------------

FORMATS = ["torchscript", "exported", "onnx", "safetensors"]


def run_export(run_dir: Path, form: str, out: Path) -> tuple[Path, dict]:
    path = (
        out
        / {"torchscript": "m.pt", "exported": "m.pt2", "onnx": "m.onnx", "safetensors": "m.safetensors"}[form]
    )
    result = invoke("export", run_dir, "--format", form, "--out", path)
    assert_clean_exit(result, 0)
    assert "largest difference from the model" in result.stdout
    return path, json.loads((out / "model.json").read_text())


def load_and_run(form: str, path: Path, run_dir: Path, inputs: torch.Tensor) -> torch.Tensor:
    """What a deployment does with each format (the safetensors weights into a model built by hand)."""
    if form == "torchscript":
        return torch.jit.load(str(path))(inputs)
    if form == "exported":
        return torch.export.load(str(path)).module()(inputs)
    if form == "onnx":
        import onnxruntime

        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return torch.from_numpy(session.run(None, {"inputs": inputs.numpy()})[0])
    from safetensors.torch import load_file

    from optcli.use.trained import open_run

    model = open_run(run_dir, "best").spec.model.build()
    model.load_state_dict(load_file(str(path)))
    return model.eval()(inputs)


def eager(run_dir: Path, inputs: torch.Tensor) -> torch.Tensor:
    from optcli.use.trained import open_run

    return open_run(run_dir, "best").build_model()(inputs)


@pytest.mark.parametrize("form", FORMATS)
def test_export_the_mlp_with_normalization_and_class_names(fruit_run, tmp_path, form):
    path, card = run_export(fruit_run, form, tmp_path)
    data = json.loads((fruit_run / "data.json").read_text())
    assert card["class_names"] == ["apple", "lemon", "orange", "pear"]
    assert card["preprocessing"]["mean"] == data["normalization"]["mean"]
    assert card["input"] == {"name": "inputs", "shape": ["batch", 4], "dtype": "float32"}
    assert card["outputs"][0]["shape"] == ["batch", 4]
    assert card["config_hash"] == read_summary(fruit_run)["config_hash"]
    summary = read_summary(fruit_run)
    assert card["metrics"]["val_loss"] == summary["best_val_loss"]
    # Raw rows, preprocessed as model.json says, in a batch of a size never traced
    raw = torch.tensor([[float(cell) for cell in row[:4]] for row in list(csv.reader(FRUIT.open()))[1:8]])
    mean, std = torch.tensor(card["preprocessing"]["mean"]), torch.tensor(card["preprocessing"]["std"])
    inputs = (raw - mean) / std
    with torch.no_grad():
        assert torch.allclose(
            load_and_run(form, path, fruit_run, inputs), eager(fruit_run, inputs), rtol=0, atol=1e-5
        )


@pytest.mark.parametrize("form", FORMATS)
def test_export_a_model_of_ones_own(waves_run, tmp_path, form):
    path, card = run_export(waves_run, form, tmp_path)
    assert card["input"]["shape"] == ["batch", 48] and card["class_names"] == [
        "sawtooth",
        "sine",
        "square",
        "triangle",
    ]
    inputs = torch.randn(7, 48, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        difference = (load_and_run(form, path, waves_run, inputs) - eager(waves_run, inputs)).abs().max()
    assert float(difference) <= 1e-5


@pytest.mark.parametrize("form", FORMATS)
def test_export_the_cnn(digits_cnn_run, tmp_path, form):
    path, card = run_export(digits_cnn_run, form, tmp_path)
    assert card["input"]["shape"] == ["batch", 1, 8, 8]
    inputs = torch.randn(5, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        difference = (
            (load_and_run(form, path, digits_cnn_run, inputs) - eager(digits_cnn_run, inputs)).abs().max()
        )
    assert float(difference) <= 1e-5


def test_a_model_that_cannot_be_exported_names_the_format_and_the_formats_that_work(tmp_path):
    """Control flow on a tensor's value: torch.export refuses it, a trace would bake in one branch
    (refused too, rather than be wrong for other inputs); the bare weights work."""
    branching = "        out = self.layer(inputs)\n        return out * 2 if out.sum() > 0 else out\n"
    run_dir = user_model_run(tmp_path, branching)
    result = invoke("export", run_dir, "--format", "exported", "--out", tmp_path / "m.pt2")
    assert_clean_exit(result, 1)
    assert result.stderr.startswith("error: --format exported: the model cannot be exported: ")
    assert "formats that work for this model: safetensors" in result.stderr
    assert not (tmp_path / "m.pt2").exists() and not (tmp_path / "model.json").exists()
    traced = invoke("export", run_dir, "--format", "torchscript", "--out", tmp_path / "m.pt")
    assert_clean_exit(traced, 1)
    assert (
        "--format torchscript: the model cannot be exported: TracerWarning: Converting a tensor to a Python boolean"
        in traced.stderr
    )
    assert not (tmp_path / "m.pt").exists()


def test_an_export_without_its_extra_says_which_to_install(fruit_run, tmp_path, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *rest: None if name == "onnxruntime" else real(name, *rest)
    )
    message = config_error(invoke("export", fruit_run, "--format", "onnx", "--out", tmp_path / "m.onnx"))
    assert "--format onnx needs onnxruntime: pip install 'optcli[onnx]'" in message
    assert not (tmp_path / "m.onnx").exists()


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (("config.yaml", "val_fraction: 0.25", "val_fraction: 0.2"), "data.val_fraction: 0.25 -> 0.2"),
        (("config.yaml", "activation: relu", "activation: tanh"), "model.activation: 'relu' -> 'tanh'"),
        (("data.json", '"apple"', '"pear!"'), "data.json: differs from what the run wrote"),
    ],
)
def test_an_edited_config_or_data_record_is_refused_naming_the_file(fruit_run, tmp_path, edit, message):
    """The checkpoint vouches for what the run was: an edited config.yaml or data.json would change
    the split, the model or the class names in silence."""
    copy = tmp_path / "run"
    shutil.copytree(fruit_run, copy)
    name, old, new = edit
    text = (copy / name).read_text()
    assert old in text
    (copy / name).write_text(text.replace(old, new, 1))
    for command in (
        ("evaluate", copy),
        ("predict", copy, FRUIT, "--out", tmp_path / "p.csv"),
        ("export", copy, "--format", "torchscript"),
    ):
        assert message in config_error(invoke(*command)), command
    assert not (tmp_path / "p.csv").exists()


def test_a_comparisons_folder_is_refused_where_one_run_is_meant(tmp_path):
    base = {**yaml.safe_load((REPO / "configs" / "tiny.yaml").read_text()), "train": {"epochs": 1}}
    compare = write_config(tmp_path, {"base": base, "seeds": 1, "runs": {"a": {}, "b": {}}}, "c.yaml")
    assert_clean_exit(invoke("compare", compare, "--out", tmp_path / "out", "--quiet"), 0)
    (directory,) = (tmp_path / "out").glob("compare-*/*")
    assert "a comparison's folder holds a run per arm and seed; name one" in config_error(
        invoke("evaluate", directory)
    )


def test_export_never_writes_through_a_symlinked_export_folder(tmp_path):
    run = train_ok(REPO / "configs" / "fruit_csv.yaml", tmp_path / "runs", "--set", "train.epochs=1")
    outside = tmp_path / "outside"
    outside.mkdir()
    (run / "export").symlink_to(outside, target_is_directory=True)
    message = config_error(invoke("export", run, "--format", "torchscript"))
    assert f"{run / 'export'}: a symbolic link; optcli never writes a run's files through one" in message
    assert not any(outside.iterdir())
    assert_clean_exit(invoke("export", run, "--format", "torchscript", "--out", tmp_path / "m.pt"), 0)


def optcli_on_a_full_disk(*arguments: str | Path, limit: int) -> subprocess.CompletedProcess[str]:
    """`optcli ARGUMENTS` in a process whose every write past `limit` bytes of a file the kernel
    refuses (RLIMIT_FSIZE: EFBIG), as a nearly full disk would (ENOSPC)."""
    import resource

    def limit_file_size() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return subprocess.run(
        [sys.executable, "-m", "optcli", *map(str, arguments)],
        capture_output=True,
        text=True,
        preexec_fn=limit_file_size,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        timeout=300,
    )


@pytest.mark.slow  # a real process per format
@pytest.mark.skipif(
    sys.platform == "win32", reason="a file-size limit (RLIMIT_FSIZE) stands in for a full disk"
)
@pytest.mark.parametrize("form", FORMATS)
def test_an_export_that_the_disk_cannot_hold_names_the_file_and_leaves_nothing(fruit_run, tmp_path, form):
    """torch's own file writer used to abort the process on a full disk (SIGABRT and native frames),
    and the ONNX and safetensors exports blamed the format."""
    out = tmp_path / form / "model.bin"
    result = optcli_on_a_full_disk("export", fruit_run, "--format", form, "--out", out, limit=1024)
    assert result.returncode == 1, result.stderr
    assert result.stderr.strip() == f"error: cannot read or write {out}: File too large"
    assert list(out.parent.iterdir()) == []  # no model, no card, no temporary file


@pytest.mark.slow  # a real process per command
@pytest.mark.skipif(
    sys.platform == "win32", reason="a file-size limit (RLIMIT_FSIZE) stands in for a full disk"
)
@pytest.mark.parametrize("command", ["predict", "evaluate"])
def test_predictions_or_metrics_that_the_disk_cannot_hold_name_the_file(fruit_run, tmp_path, command):
    out = tmp_path / "out" / "written"
    out.parent.mkdir()
    inputs = [FRUIT] if command == "predict" else []
    result = optcli_on_a_full_disk(command, fruit_run, *inputs, "--out", out, limit=100)
    assert result.returncode == 1, result.stderr
    assert result.stderr.strip().endswith(f"error: cannot read or write {out}: File too large")
    assert list(out.parent.iterdir()) == []
