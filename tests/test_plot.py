"""`optcli plot`: one picture of finished runs, or of every run of a comparison."""

from __future__ import annotations

import struct

from tests.conftest import (
    SMALL_TEACHER,
    assert_clean_exit,
    config_error,
    guide_config,
    invoke,
    train_ok,
    write_config,
)

DATA = SMALL_TEACHER


def png_size(path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def test_plot_draws_several_runs_into_one_png(tmp_path):
    adam = train_ok(write_config(tmp_path, guide_config(data=DATA, name="adam"), "a.yaml"), tmp_path / "runs")
    sgd_config = guide_config(data=DATA, name="sgd", optimizer={"name": "sgd", "lr": 0.1})
    sgd = train_ok(write_config(tmp_path, sgd_config, "s.yaml"), tmp_path / "runs")
    result = invoke("plot", adam, sgd, "--out", tmp_path / "both.png")
    assert_clean_exit(result, 0)
    assert str(tmp_path / "both.png") in result.stdout
    _, three_panels = png_size(tmp_path / "both.png")
    result = invoke("plot", adam, "--metric", "val_accuracy")
    assert_clean_exit(result, 0)
    _, four_panels = png_size(adam / "plot.png")  # the default: plot.png in the run's directory
    assert four_panels > three_panels


def test_plot_of_a_comparison_draws_every_run(tmp_path):
    write_config(tmp_path, guide_config(data=DATA), "base.yaml")
    runs = {"adam": {}, "sgd": {"optimizer": {"name": "sgd", "lr": 0.1}}}
    compare = write_config(tmp_path, {"base": "base.yaml", "seeds": 2, "runs": runs}, "c.yaml")
    assert_clean_exit(invoke("compare", compare, "--out", tmp_path / "out", "--quiet"), 0)
    directory = next((tmp_path / "out").glob("compare-c/*"))
    assert_clean_exit(invoke("plot", directory), 0)
    assert png_size(directory / "plot.png")[1] > 0


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
