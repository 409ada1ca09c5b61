"""Metrics by name (`metrics:`): each built-in equals scikit-learn's on the run's own predictions, and
every metric goes where the validation loss goes: the CSV files, summary.json, `evaluate`, the
monitor that picks best.pt, compare's --metric and a target."""

from __future__ import annotations

import json
from pathlib import Path

import numpy
import pytest
import yaml
from sklearn import metrics as sk

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
from tests.test_use import FRUIT, epoch_row, val_rows_csv

CLASSES = ("apple", "lemon", "orange", "pear")
EVERY_CLASS_METRIC = [
    "accuracy",
    {"name": "top_k_accuracy", "k": 2},
    "f1",
    {"name": "f1", "average": "micro"},
    {"name": "f1", "average": "weighted"},
    {"name": "precision", "average": "macro"},
    {"name": "recall", "average": "weighted"},
    "auroc",
    "confusion_matrix",
    "perplexity",
]


def fruit(tmp_path: Path, metrics: list | None = None, **train) -> Path:
    """configs/fruit_csv.yaml, few epochs (the predictions still wrong often enough to tell metrics
    apart), with `metrics:`; the config written beside a copy of the data."""
    config = yaml.safe_load((REPO / "configs" / "fruit_csv.yaml").read_text())
    config["data"]["path"] = str(FRUIT)
    config["train"] = {"epochs": 3, "threads": 1, **train}
    if metrics is not None:
        config["metrics"] = metrics
    return write_config(tmp_path, config)


@pytest.fixture(scope="module")
def measured_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("metrics")
    return train_ok(fruit(directory, EVERY_CLASS_METRIC), directory / "runs")


def predictions(run: Path, tmp_path: Path) -> tuple[numpy.ndarray, numpy.ndarray]:
    """The run's validation rows predicted by `optcli predict` from last.pt (the last epoch's
    weights): the true class indices, and each row's probabilities."""
    rows = val_rows_csv(run, FRUIT, tmp_path / "val.csv")
    assert_clean_exit(invoke("predict", run, rows, "--checkpoint", "last", "--out", tmp_path / "p.csv"), 0)
    predicted = read_csv(tmp_path / "p.csv")
    truth = numpy.array([CLASSES.index(row["target"]) for row in predicted])
    scores = numpy.array([[float(row[f"p_{name}"]) for name in CLASSES] for row in predicted])
    return truth, scores


def test_every_builtin_equals_scikit_learns_on_the_predicted_validation_rows(measured_run, tmp_path):
    truth, scores = predictions(measured_run, tmp_path)
    chosen = scores.argmax(axis=1)
    expected = {
        "val_accuracy": sk.accuracy_score(truth, chosen),
        "val_top2_accuracy": sk.top_k_accuracy_score(truth, scores, k=2, labels=range(4)),
        "val_f1_macro": sk.f1_score(truth, chosen, average="macro"),
        "val_f1_micro": sk.f1_score(truth, chosen, average="micro"),
        "val_f1_weighted": sk.f1_score(truth, chosen, average="weighted"),
        "val_precision_macro": sk.precision_score(truth, chosen, average="macro", zero_division=0),
        "val_recall_weighted": sk.recall_score(truth, chosen, average="weighted"),
        "val_auroc": sk.roc_auc_score(truth, scores, multi_class="ovr", average="macro"),
        "val_perplexity": numpy.exp(sk.log_loss(truth, scores, labels=range(4))),
    }
    last = read_csv(measured_run / "epochs.csv")[-1]
    assert list(last)[5:] == ["val_loss", *expected] and "val_confusion_matrix" not in last
    for column, value in expected.items():
        assert float(last[column]) == pytest.approx(value, abs=1e-6), column
    assert len(set(expected.values())) > 5  # (the metrics tell the predictions apart)
    table = list(__import__("csv").reader((measured_run / "confusion_matrix.csv").open()))
    assert table[0] == ["true \\ predicted", "0", "1", "2", "3"]
    counts = [[int(cell) for cell in row[1:]] for row in table[1:]]
    assert counts == sk.confusion_matrix(truth, chosen, labels=range(4)).tolist()


def test_summary_and_config_record_each_metric(measured_run):
    summary = read_summary(measured_run)
    for column in ("val_f1_macro", "val_top2_accuracy", "val_auroc"):
        epochs = [float(row[column]) for row in read_csv(measured_run / "epochs.csv")]
        assert summary[f"final_{column}"] == epochs[-1]
        assert summary[f"best_{column}"] == max(epochs)
        assert summary[f"best_{column}_epoch"] == epochs.index(max(epochs)) + 1
    perplexities = [float(row["val_perplexity"]) for row in read_csv(measured_run / "epochs.csv")]
    assert summary["best_val_perplexity"] == min(perplexities)  # lower is better
    recorded = yaml.safe_load((measured_run / "config.yaml").read_text())["metrics"]
    assert recorded[1] == {"name": "top_k_accuracy", "k": 2} and recorded[2] == {
        "name": "f1",
        "average": "macro",
    }


def test_evaluate_reports_the_named_metrics_as_the_run_did(measured_run, tmp_path):
    out = tmp_path / "evaluation.json"
    result = invoke("evaluate", measured_run, "--checkpoint", "last", "--out", out)
    assert_clean_exit(result, 0)
    assert "f1_macro" in result.stdout and "confusion_matrix" in result.stdout
    found = json.loads(out.read_text())
    last = read_csv(measured_run / "epochs.csv")[-1]
    assert found["metrics"]["f1_macro"] == float(last["val_f1_macro"])
    assert found["metrics"]["auroc"] == float(last["val_auroc"])
    assert sum(map(sum, found["tables"]["confusion_matrix"])) == len(
        json.loads((measured_run / "data.json").read_text())["val_rows"]
    )


def test_monitor_picks_the_best_checkpoint_by_f1_higher_being_better(tmp_path):
    run = train_ok(fruit(tmp_path, ["f1"], epochs=6, monitor="val_f1_macro"), tmp_path / "runs")
    scores = [float(row["val_f1_macro"]) for row in read_csv(run / "epochs.csv")]
    best_epoch = scores.index(max(scores)) + 1
    assert read_summary(run)["best_val_f1_macro_epoch"] == best_epoch
    out = tmp_path / "e.json"
    assert_clean_exit(invoke("evaluate", run, "--checkpoint", "best", "--out", out), 0)
    assert json.loads(out.read_text())["metrics"]["f1_macro"] == max(scores)
    assert json.loads(out.read_text())["epoch"] == best_epoch
    assert epoch_row(run, best_epoch)["val_f1_macro"] == repr(max(scores))


def test_early_stopping_follows_a_named_metric_in_its_direction(tmp_path):
    stopping = {"monitor": "val_top2_accuracy", "patience": 2}
    config = fruit(tmp_path, [{"name": "top_k_accuracy", "k": 2}], epochs=40, early_stopping=stopping)
    run = train_ok(config, tmp_path / "runs")
    values = [float(row["val_top2_accuracy"]) for row in read_csv(run / "epochs.csv")]
    best = values.index(max(values))
    assert len(values) == best + 3  # two epochs without a higher value after the best, then stopped
    assert "val_top2_accuracy did not improve" in read_summary(run)["stopped_early"]["reason"]


def test_a_torchmetrics_class_and_a_function_of_ones_own(tmp_path):
    (tmp_path / "mine.py").write_text(
        "def balanced_error(predictions, targets):\n"
        "    recalls = [(predictions.argmax(1)[targets == c] == c).float().mean() for c in targets.unique()]\n"
        "    return 1 - sum(recalls) / len(recalls)\n"
        "balanced_error.higher_is_better = False\n"
    )
    metrics = ["torchmetrics.classification:MulticlassCohenKappa", "mine.py:balanced_error"]
    run = train_ok(fruit(tmp_path, metrics), tmp_path / "runs")
    truth, scores = predictions(run, tmp_path)
    last = read_csv(run / "epochs.csv")[-1]
    chosen = scores.argmax(axis=1)
    kappa = sk.cohen_kappa_score(truth, chosen)
    assert float(last["val_multiclass_cohen_kappa"]) == pytest.approx(kappa, abs=1e-6)
    assert float(last["val_balanced_error"]) == pytest.approx(
        1 - sk.balanced_accuracy_score(truth, chosen), abs=1e-6
    )
    recorded = yaml.safe_load((run / "config.yaml").read_text())["metrics"]
    assert recorded[0]["num_classes"] == 4 and recorded[1]["higher_is_better"] is False


def test_mistakes_in_metrics_are_config_errors_naming_the_key(tmp_path):
    cases = [
        (["precison"], "metrics.0: unknown metric 'precison' (did you mean 'precision'?)"),
        (
            [{"name": "f1", "averag": "macro"}],
            "metrics.0.averag: f1 has no argument 'averag' (did you mean 'average'?)",
        ),
        ([{"name": "f1", "average": "sample"}], "metrics.0.average"),
        (
            [{"name": "torchmetrics.classification:MulticlassF1Score", "avrage": "macro"}],
            "metrics.0: MulticlassF1Score refused its arguments: ValueError: Unexpected keyword arguments: `avrage`",
        ),
        (["accuracy", "accuracy"], "metrics.1: a second metric with the column 'accuracy'"),
        (
            [{"name": "top_k_accuracy", "k": 4}],
            "metrics.0.k: 4 with 4 classes: every sample would count as right",
        ),
        (["f1"], None),
    ]
    for metrics, expected in cases[:-1]:
        message = config_error(invoke("check", fruit(tmp_path, metrics)))
        assert expected in message, message
    (tmp_path / "mine.py").write_text("def undirected(predictions, targets):\n    return 0.0\n")
    message = config_error(invoke("check", fruit(tmp_path, ["mine.py:undirected"])))
    assert "metrics.0.higher_is_better: say which way undirected is better" in message
    diabetes = yaml.safe_load((REPO / "configs" / "diabetes.yaml").read_text())  # real-valued targets
    path = write_config(tmp_path, {**diabetes, "metrics": ["f1"]}, "regression.yaml")
    message = config_error(invoke("check", path))
    assert "metrics.0: f1 judges class labels, and this run's targets are real values" in message
    message = config_error(invoke("check", fruit(tmp_path, ["f1"], monitor="val_f1_micro")))
    assert (
        "train.monitor: 'val_f1_micro' is not a metric this run produces (did you mean 'val_f1_macro'?)"
        in message
    )


def test_compare_ranks_by_a_named_metric_higher_being_better_and_counts_steps_to_its_target(tmp_path):
    base = yaml.safe_load(fruit(tmp_path, ["f1", {"name": "top_k_accuracy", "k": 2}], epochs=4).read_text())
    write_config(tmp_path, base, "base.yaml")
    compare = {
        "base": "base.yaml",
        "seeds": [0, 1],
        "metric": "val_f1_macro",
        "runs": {
            "slow": {"optimizer": {"name": "sgd", "lr": 0.001}},
            "adam": {"optimizer": {"name": "adam", "lr": 0.01}},
        },
    }
    path = write_config(tmp_path, compare, "compare.yaml")
    assert_clean_exit(invoke("compare", path, "--out", tmp_path / "out", "--quiet"), 0)
    directory = next((tmp_path / "out").glob("compare-compare/*"))
    summary = json.loads((directory / "summary.json").read_text())
    assert summary["metric"] == "val_f1_macro" and summary["lower_is_better"] is False
    ranked = read_csv(directory / "summary.csv")
    assert [row["arm"] for row in ranked] == ["adam", "slow"]
    assert float(ranked[0]["mean"]) > float(ranked[1]["mean"])
    results = read_csv(directory / "results.csv")
    assert {"val_f1_macro", "best_val_f1_macro", "val_top2_accuracy"} <= set(results[0])
    assert "reached the highest validation F1 (macro)" in summary["verdict"]

    targeted = {**compare, "metric": "steps_to_target", "target": {"val_top2_accuracy": 0.9}}
    path = write_config(tmp_path, targeted, "targeted.yaml")
    assert_clean_exit(invoke("compare", path, "--out", tmp_path / "out2", "--quiet"), 0)
    directory = next((tmp_path / "out2").glob("compare-targeted/*"))
    for row in read_csv(directory / "results.csv"):
        run = directory / f"{row['arm']}-seed{row['seed']}"
        values = [(int(r["step"]), float(r["val_top2_accuracy"])) for r in read_csv(run / "epochs.csv")]
        reached = next((step for step, value in values if value >= 0.9), None)
        assert row["steps_to_target"] == ("" if reached is None else str(reached)), row


def test_the_docs_name_every_builtin_metric_the_table_holds():
    """The README and docs/configs.md's Metrics section list what metrics/table.py holds."""
    from optcli.metrics.table import BUILTINS

    readme = (REPO / "README.md").read_text()
    guide = (REPO / "docs" / "configs.md").read_text()
    section = guide[guide.index("## Metrics") : guide.index("\n## ", guide.index("## Metrics") + 1)]
    for name in BUILTINS:
        assert f"`{name}`" in readme, name
        assert f"`{name}`" in section, name


def test_on_the_digits_cnn_each_builtin_equals_scikit_learns_on_the_models_outputs(tmp_path):
    """Ten classes through the shipped CNN: the run's last epoch's metrics, against scikit-learn on
    the outputs of last.pt's weights over the run's own validation batches."""
    import torch

    from optcli.config.loading import load_config
    from optcli.config.resolve import resolve_config
    from optcli.train.checkpoints import load_checkpoint
    from optcli.train.session import build_session

    config = {
        "name": "digits_cnn",
        "device": "cpu",
        "model": {"name": "cnn"},
        "data": {"name": "digits", "val_fraction": 0.2, "normalize": True, "batch_size": 64},
        "optimizer": {"name": "sgd", "lr": 0.01},  # slow on purpose: many mistakes left to count
        "metrics": [
            "accuracy",
            {"name": "top_k_accuracy", "k": 3},
            "f1",
            {"name": "recall", "average": "micro"},
            "auroc",
        ],
        "train": {"epochs": 1, "threads": 1},
    }
    run = train_ok(write_config(tmp_path, config), tmp_path / "runs")
    spec = resolve_config(load_config(run / "config.yaml"))
    session = build_session(spec)
    session.model.load_state_dict(dict(load_checkpoint(run / "checkpoints" / "last.pt")["model"]))
    session.model.eval()
    assert session.val_batches is not None
    with torch.no_grad():
        batches = list(session.val_batches.epoch())
        logits = torch.cat([session.model(inputs) for inputs, _ in batches]).double()
        truth = torch.cat([targets for _, targets in batches]).numpy()
    scores = torch.softmax(logits, dim=1).numpy()
    chosen = scores.argmax(axis=1)
    last = read_csv(run / "epochs.csv")[-1]
    expected = {
        "val_accuracy": sk.accuracy_score(truth, chosen),
        "val_top3_accuracy": sk.top_k_accuracy_score(truth, scores, k=3, labels=range(10)),
        "val_f1_macro": sk.f1_score(truth, chosen, average="macro"),
        "val_recall_micro": sk.recall_score(truth, chosen, average="micro"),
        "val_auroc": sk.roc_auc_score(truth, scores, multi_class="ovr", average="macro"),
    }
    assert float(last["val_accuracy"]) < 0.95  # (mistakes left: the metrics are told apart)
    for column, value in expected.items():
        assert float(last[column]) == pytest.approx(value, abs=1e-6), column
