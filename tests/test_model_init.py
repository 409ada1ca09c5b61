"""`model.init`: starting from trained weights (a run's checkpoint, or a weights file)."""

from __future__ import annotations

import torch

from optcli.config.loading import load_config
from optcli.config.resolve import resolve_config
from optcli.train.checkpoints import load_checkpoint
from optcli.train.session import build_session
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

BASE = guide_config(data={**SMALL_TEACHER, "shuffle": False}, model={"name": "mlp", "hidden": [16]})


def test_fine_tuning_starts_from_the_source_runs_best_weights(tmp_path):
    source = train_ok(
        write_config(tmp_path, {**BASE, "train": {"epochs": 4}}, "source.yaml"), tmp_path / "runs"
    )
    tuned_config = {
        **BASE,
        "model": {**BASE["model"], "init": str(source)},
        "optimizer": {"name": "sgd", "lr": 0.01},
    }
    path = write_config(tmp_path, tuned_config, "tuned.yaml")
    session = build_session(resolve_config(load_config(path)))
    best = load_checkpoint(source / "checkpoints" / "best.pt")["model"]
    assert all(torch.equal(session.model.state_dict()[key], best[key]) for key in best)
    # The first logged loss equals the source model's loss on the same (first, unshuffled) batch.
    inputs, targets = next(session.batches.epoch())
    with torch.no_grad():
        expected = torch.nn.functional.cross_entropy(session.model(inputs), targets).item()
    tuned = train_ok(path, tmp_path / "tuned")
    assert float(read_csv(tuned / "metrics.csv")[0]["loss"]) == expected
    assert read_summary(tuned)["init_from"] == str(source / "checkpoints" / "best.pt")
    last = write_config(
        tmp_path, {**tuned_config, "model": {**tuned_config["model"], "init_checkpoint": "last"}}, "l.yaml"
    )
    assert read_summary(train_ok(last, tmp_path / "last"))["init_from"].endswith("last.pt")


def test_weights_that_do_not_fit_are_config_errors_unless_init_strict_is_false(tmp_path):
    model = torch.nn.Sequential(
        torch.nn.Flatten(), torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3)
    )
    state = model.state_dict()
    torch.save(state, tmp_path / "weights.pt")
    fits = {**BASE, "model": {**BASE["model"], "init": "weights.pt"}}
    assert_clean_exit(invoke("check", write_config(tmp_path, fits)), 0)
    torch.save({**state, "extra.weight": torch.zeros(1)}, tmp_path / "extra.pt")
    extra = {**BASE, "model": {**BASE["model"], "init": "extra.pt"}}
    message = config_error(invoke("check", write_config(tmp_path, extra, "e.yaml")))
    assert "not in the model: ['extra.weight']" in message and "init_strict: false" in message
    lenient = {**BASE, "model": {**extra["model"], "init_strict": False}}
    result = invoke("check", write_config(tmp_path, lenient, "l.yaml"))
    assert_clean_exit(result, 0)
    assert "note: model: starting from the weights" in result.stderr and "extra.weight" in result.stderr
    wide = {**BASE, "model": {"name": "mlp", "hidden": [32], "init": "weights.pt"}}
    assert "do not fit the model" in config_error(invoke("check", write_config(tmp_path, wide, "w.yaml")))
    missing = {**BASE, "model": {**BASE["model"], "init": "nope"}}
    assert "is no run directory or weights file" in config_error(
        invoke("check", write_config(tmp_path, missing, "m.yaml"))
    )


def test_a_folder_of_runs_starts_from_its_newest(tmp_path):
    source_config = write_config(tmp_path, {**BASE, "name": "source", "train": {"epochs": 2}}, "source.yaml")
    older = train_ok(source_config, tmp_path / "runs")
    newer = train_ok(source_config, tmp_path / "runs")
    assert older != newer and older.parent == newer.parent == tmp_path / "runs" / "source"
    tuned = {**BASE, "model": {**BASE["model"], "init": "runs/source", "init_checkpoint": "last"}}
    run = train_ok(write_config(tmp_path, tuned, "tuned.yaml"), tmp_path / "tuned")
    assert read_summary(run)["init_from"] == str(newer / "checkpoints" / "last.pt")
