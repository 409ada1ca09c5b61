"""`optcli find-lr`: the learning-rate range test on a config's model and data."""

from __future__ import annotations

import re

import torch
import yaml

from tests.conftest import (
    REPO,
    assert_clean_exit,
    config_error,
    invoke,
    read_csv,
    read_summary,
    run_dirs,
    train_ok,
)

TEACHER = REPO / "configs" / "teacher_mlp.yaml"


def suggested(output: str) -> float:
    return float(re.search(r"suggested optimizer\.lr: ([0-9.e+-]+)", output).group(1))


def test_the_suggestion_trains_without_diverging_and_beats_the_start_rate(tmp_path):
    result = invoke("find-lr", TEACHER, "--out", tmp_path / "test", "--apply", tmp_path / "tuned.yaml")
    assert_clean_exit(result, 0)
    assert "steepest descent of the smoothed loss" in result.stdout and "minimum / 10" in result.stdout
    rate = suggested(result.stdout)
    rows = read_csv(tmp_path / "test" / "lr_find.csv")
    assert list(rows[0]) == ["step", "lr", "loss", "smoothed_loss"] and len(rows) >= 10
    assert (tmp_path / "test" / "lr_find.png").read_bytes().startswith(b"\x89PNG")
    tuned = yaml.safe_load((tmp_path / "tuned.yaml").read_text())
    assert tuned["optimizer"]["lr"] == rate or abs(tuned["optimizer"]["lr"] - rate) / rate < 0.01
    five_epochs = ("--set", "train.epochs=5")
    at_suggestion = read_summary(train_ok(tmp_path / "tuned.yaml", tmp_path / "runs", *five_epochs))
    at_start = read_summary(train_ok(TEACHER, tmp_path / "start", *five_epochs, "--set", "optimizer.lr=1e-7"))
    assert at_suggestion["status"] == "completed"
    assert at_suggestion["final_loss"] < at_start["final_loss"]


def test_sgd_is_suggested_a_higher_rate_than_adam(tmp_path):
    adam = invoke("find-lr", TEACHER, "--out", tmp_path / "adam")
    sgd = invoke("find-lr", TEACHER, "--out", tmp_path / "sgd", "--set", "optimizer.name=sgd")
    assert_clean_exit(adam, 0)
    assert_clean_exit(sgd, 0)
    assert suggested(sgd.stdout) > 3 * suggested(adam.stdout)  # plain SGD takes larger steps than Adam


def test_the_same_config_gives_the_same_curve_and_trains_nothing(tmp_path):
    first = invoke("find-lr", TEACHER, "--out", tmp_path / "first")
    second = invoke("find-lr", TEACHER, "--set", f"output.dir={tmp_path / 'runs'}")
    assert_clean_exit(second, 0)
    assert read_csv(tmp_path / "first" / "lr_find.csv") == read_csv(
        next((tmp_path / "runs" / "teacher_mlp").glob("lr_find-*")) / "lr_find.csv"
    )
    assert suggested(first.stdout) == suggested(second.stdout)
    assert run_dirs(tmp_path / "runs") == []  # no run directory: only the test's own folder


def test_the_random_generators_are_left_as_they_were(tmp_path):
    from optcli.config.loading import load_config
    from optcli.config.resolve import resolve_config
    from optcli.train.lr_finder import range_test

    spec = resolve_config(load_config(TEACHER))
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    range_test(spec, 1e-5, 1.0, 20)
    assert torch.equal(torch.rand(3), expected)


def test_find_lr_refuses_what_it_cannot_test(tmp_path):
    assert "--start-lr" in config_error(invoke("find-lr", TEACHER, "--start-lr", "1", "--end-lr", "0.1"))
    assert "at least 10 steps" in config_error(invoke("find-lr", TEACHER, "--steps", "3"))
    message = config_error(invoke("find-lr", TEACHER, "--set", "optimizer.name=lbfgs"))
    assert "one step per batch" in message


def test_apply_refuses_a_copy_whose_relative_paths_would_not_resolve_and_keeps_none(tmp_path):
    """configs/fruit_csv.yaml names data/fruit.csv relative to its folder: a copy elsewhere would not
    find it, so none is written (the message says where to write it); beside the original it works."""
    fruit = REPO / "configs" / "fruit_csv.yaml"
    elsewhere = tmp_path / "tuned.yaml"
    message = config_error(invoke("find-lr", fruit, "--out", tmp_path / "test", "--apply", elsewhere))
    assert f"--apply: {elsewhere} would not work where it is: data.path: no such file" in message
    assert "write the copy there" in message and not elsewhere.exists()
