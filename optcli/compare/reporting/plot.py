"""`optcli plot`: one picture of finished runs, from their files: the training (and validation) loss,
the learning rate and the gradient norm against the step, a line per run; a comparison's directory
stands for all of its runs."""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass
from pathlib import Path

from optcli.errors import ConfigError
from optcli.plotting import load_pyplot
from optcli.train.rundir import read_csv_rows


@dataclass(frozen=True)
class PlottedRun:
    label: str
    steps: list[tuple[int, dict[str, str]]]  # metrics.csv rows by step
    epochs: list[dict[str, str]]  # epochs.csv rows


def find_runs(directories: list[Path]) -> list[Path]:
    """The run directories meant: each run directory given, and every run of each comparison given."""
    runs: list[Path] = []
    for directory in directories:
        if (directory / "metrics.csv").is_file():
            runs.append(directory)
        elif (directory / "results.csv").is_file():
            runs += sorted(path.parent for path in directory.glob("*/metrics.csv"))
        else:
            raise ConfigError(
                f"{directory}: not a run directory (no metrics.csv) nor a comparison's (no results.csv)"
            )
    if not runs:
        raise ConfigError("no runs to plot: the comparison has no finished runs")
    return runs


def read_runs(runs: list[Path]) -> list[PlottedRun]:
    """Each run's rows, labelled by its name (and its folder, where two share a name)."""
    names = [_run_name(run) for run in runs]
    plotted = []
    for run, name in zip(runs, names, strict=True):
        label = name if names.count(name) == 1 else f"{name} ({run.name})"
        rows = [(int(row["step"]), row) for row in _checked_rows(run / "metrics.csv")]
        epochs = _checked_rows(run / "epochs.csv") if (run / "epochs.csv").exists() else []
        plotted.append(PlottedRun(label, rows, epochs))
    return plotted


def _checked_rows(path: Path) -> list[dict[str, str]]:
    """A run's CSV rows, every cell a number (or empty) and every row with a step; a damaged file is
    a ConfigError naming it, the line and the column."""
    try:
        rows = read_csv_rows(path)
    except UnicodeDecodeError as error:
        raise ConfigError(f"{path}: not a CSV file optcli wrote (not UTF-8 text: {error.reason})") from None
    except csv.Error as error:
        raise ConfigError(f"{path}: not a CSV file optcli wrote ({error})") from None
    if rows and "step" not in rows[0]:
        raise ConfigError(f"{path}: no 'step' column (its header: {', '.join(map(str, rows[0]))})")
    for line, row in enumerate(rows, 2):
        for column, cell in row.items():
            if column is None or cell is None:
                raise ConfigError(
                    f"{path}:{line}: {'more' if column is None else 'fewer'} cells than columns"
                )
            if cell != "" and not _is_number(cell, integer=column in ("step", "epoch")):
                raise ConfigError(f"{path}:{line}: column '{column}' holds '{cell}', not a number")
    return rows


def _is_number(text: str, integer: bool) -> bool:
    try:
        int(text) if integer else float(text)
    except ValueError:
        return False
    return True


def _run_name(run: Path) -> str:
    try:
        return str(json.loads((run / "summary.json").read_text())["name"]) if run.parent.name else run.name
    except (OSError, ValueError, KeyError):
        return run.name


def _values(rows: list[tuple[int, dict[str, str]]], column: str) -> tuple[list[int], list[float]]:
    pairs = [(step, float(row[column])) for step, row in rows if row.get(column) not in (None, "")]
    finite = [(step, value) for step, value in pairs if math.isfinite(value)]
    return [step for step, _ in finite], [value for _, value in finite]


def draw_runs(path: Path, plotted: list[PlottedRun], metrics: list[str]) -> None:
    """Loss, learning rate, gradient norm, and a panel per extra epochs.csv metric."""
    pyplot = load_pyplot()
    panels = ["loss", "learning rate", "gradient norm (before clipping)", *metrics]
    figure, axes = pyplot.subplots(len(panels), 1, figsize=(9, 2.6 * len(panels) + 1), sharex=True)
    for colour, run in zip((f"C{index % 10}" for index in range(len(plotted))), plotted, strict=False):
        axes[0].plot(*_values(run.steps, "loss"), color=colour, linewidth=1.2, label=f"{run.label} train")
        epoch_rows = [(int(row["step"]), row) for row in run.epochs]
        if any(row.get("val_loss") for row in run.epochs):
            axes[0].plot(
                *_values(epoch_rows, "val_loss"),
                color=colour,
                linestyle="--",
                marker=".",
                label=f"{run.label} val",
            )
        axes[1].plot(*_values(run.steps, "lr"), color=colour, linewidth=1.2)
        axes[2].plot(*_values(run.steps, "grad_norm"), color=colour, linewidth=1.0)
        for axis, metric in zip(axes[3:], metrics, strict=True):
            axis.plot(*_values(epoch_rows, metric), color=colour, marker=".", linewidth=1.2)
    for axis, panel in zip(axes, panels, strict=True):
        values = [value for line in axis.get_lines() for value in line.get_ydata()]
        if values and min(values) > 0 and max(values) / min(values) > 20:  # spans decades
            axis.set_yscale("log")
        axis.set_ylabel(panel if panel in panels[:3] else f"{panel} (epoch ends)")
        axis.grid(True, which="both", alpha=0.3)
    axes[0].set_title(
        f"{len(plotted)} run{'s' if len(plotted) > 1 else ''}: loss, learning rate and gradient norm by optimizer step",
        fontsize=10,
    )
    axes[0].legend(fontsize=8)
    axes[-1].set_xlabel("optimizer step")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    pyplot.close(figure)
