"""`optcli plot`: one picture of finished runs, or of every run of a comparison. The figures are
checked for what they draw (each panel's lines, their labels and their data against the runs' CSV
files), caught as they are saved."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.conftest import (
    SMALL_TEACHER,
    assert_clean_exit,
    config_error,
    guide_config,
    invoke,
    read_csv,
    train_ok,
    write_config,
)

DATA = SMALL_TEACHER


@pytest.fixture
def drawn(monkeypatch) -> list[tuple[Path, Any]]:
    """(path, figure) of every figure saved meanwhile, the PNG written as usual."""
    from matplotlib.figure import Figure

    saved: list[tuple[Path, Any]] = []
    real = Figure.savefig

    def keep(figure, path, *arguments, **keywords):
        saved.append((Path(path), figure))
        return real(figure, path, *arguments, **keywords)

    monkeypatch.setattr(Figure, "savefig", keep)
    return saved


def lines_of(axis) -> dict[str, tuple[list[float], list[float]]]:
    return {line.get_label(): (list(line.get_xdata()), list(line.get_ydata())) for line in axis.get_lines()}


def column(rows: list[dict[str, str]], name: str) -> list[float]:
    return [float(row[name]) for row in rows]


def test_plot_draws_each_runs_loss_rate_and_gradient_norm_from_its_files(tmp_path, drawn):
    adam = train_ok(write_config(tmp_path, guide_config(data=DATA, name="adam"), "a.yaml"), tmp_path / "runs")
    sgd_config = guide_config(data=DATA, name="sgd", optimizer={"name": "sgd", "lr": 0.1})
    sgd = train_ok(write_config(tmp_path, sgd_config, "s.yaml"), tmp_path / "runs")
    result = invoke("plot", adam, sgd, "--out", tmp_path / "both.png")
    assert_clean_exit(result, 0)
    assert str(tmp_path / "both.png") in result.stdout
    ((path, figure),) = drawn
    assert path == tmp_path / "both.png" and path.read_bytes().startswith(b"\x89PNG")
    loss, rate, norm = figure.axes
    assert [axis.get_ylabel() for axis in figure.axes] == [
        "loss",
        "learning rate",
        "gradient norm (before clipping)",
    ]
    for run, name in ((adam, "adam"), (sgd, "sgd")):
        rows = read_csv(run / "metrics.csv")
        steps = column(rows, "step")
        assert lines_of(loss)[f"{name} train"] == (steps, column(rows, "loss"))
    assert [line.get_ydata().tolist() for line in rate.get_lines()] == [
        column(read_csv(run / "metrics.csv"), "lr") for run in (adam, sgd)
    ]
    assert [line.get_ydata().tolist() for line in norm.get_lines()] == [
        column(read_csv(run / "metrics.csv"), "grad_norm") for run in (adam, sgd)
    ]


def test_a_metric_panel_draws_the_epochs_values(tmp_path, drawn):
    config = guide_config(data={**DATA, "val_fraction": 0.25}, train={"epochs": 3})
    run = train_ok(write_config(tmp_path, config), tmp_path / "runs")
    assert_clean_exit(invoke("plot", run, "--metric", "val_accuracy"), 0)
    ((path, figure),) = drawn
    assert path == run / "plot.png"  # the default: plot.png in the run's directory
    epochs = read_csv(run / "epochs.csv")
    assert figure.axes[3].get_ylabel() == "val_accuracy (epoch ends)"
    ((steps, values),) = lines_of(figure.axes[3]).values()
    assert (steps, values) == (column(epochs, "step"), column(epochs, "val_accuracy"))
    label = next(label for label in lines_of(figure.axes[0]) if label.endswith(" val"))
    assert lines_of(figure.axes[0])[label] == (column(epochs, "step"), column(epochs, "val_loss"))


def test_plot_of_a_comparison_draws_every_run(tmp_path, drawn):
    write_config(tmp_path, guide_config(data=DATA), "base.yaml")
    runs = {"adam": {}, "sgd": {"optimizer": {"name": "sgd", "lr": 0.1}}}
    compare = write_config(tmp_path, {"base": "base.yaml", "seeds": 2, "runs": runs}, "c.yaml")
    assert_clean_exit(invoke("compare", compare, "--out", tmp_path / "out", "--quiet"), 0)
    directory = next((tmp_path / "out").glob("compare-c/*"))
    drawn.clear()  # (the comparison's own curves.png)
    assert_clean_exit(invoke("plot", directory), 0)
    ((_, figure),) = drawn
    train_lines = [label for label in lines_of(figure.axes[0]) if label.endswith(" train")]
    assert len(train_lines) == 4
    for run in sorted(directory.glob("*-seed*")):
        rows = read_csv(run / "metrics.csv")
        assert (column(rows, "step"), column(rows, "loss")) in lines_of(figure.axes[0]).values()


def test_plot_refuses_what_it_cannot_draw(tmp_path):
    assert "not a run directory" in config_error(invoke("plot", tmp_path))
    run = train_ok(write_config(tmp_path, guide_config(data=DATA)), tmp_path / "runs")
    assert "no run has speed" in config_error(invoke("plot", run, "--metric", "speed"))


def test_plot_of_damaged_files_names_the_file_and_line(tmp_path):
    run = train_ok(write_config(tmp_path, guide_config(data=DATA)), tmp_path / "runs")
    metrics = run / "metrics.csv"
    good = metrics.read_text()
    lines = good.splitlines()
    damaged = {
        "binary": (b"\xff\xfe" + good.encode(), "not UTF-8 text"),
        "no step": ("\n".join([lines[0].replace("step", "stp", 1), *lines[1:]]), "no 'step' column"),
        "a word": (
            "\n".join([*lines[:3], lines[3].replace(lines[3].split(",")[2], "abc"), *lines[4:]]),
            ":4: column 'loss' holds 'abc'",
        ),
        "a short row": ("\n".join([*lines[:2], "5,1", *lines[3:]]), ":3: fewer cells than columns"),
    }
    for name, (content, expected) in damaged.items():
        if isinstance(content, bytes):
            metrics.write_bytes(content)
        else:
            metrics.write_text(content)
        message = config_error(invoke("plot", run, "--out", tmp_path / "plot.png"))
        assert str(metrics) in message and expected in message, (name, message)
