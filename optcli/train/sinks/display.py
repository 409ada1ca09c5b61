"""What the terminal shows while a run trains: a live Rich table, plain lines, or nothing.

Each display is a sink: it consumes the loop's records. The live display redraws at most a few times
per second from a background thread, so a fast loop never waits for the terminal.
"""

from __future__ import annotations

import shutil
import sys
import time
from collections import deque
from pathlib import Path
from typing import TextIO

from rich.console import Console, Group
from rich.live import Live
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from optcli.metrics.table import format_metric
from optcli.train.records import EpochRecord, Record, RunStarted, SkippedStep, StepRecord
from optcli.train.sinks import RunOutcome, Sink

REFRESHES_PER_SECOND = 4


def skipped_step_warning(record: SkippedStep) -> str:
    return (
        f"warning: step {record.step} (epoch {record.epoch}): the loss was {record.loss}; its update was skipped "
        f"({record.skips_in_a_row} in a row)"
    )


def format_lr(lr: float) -> str:
    return f"{lr:.3e}"


def format_loss(loss: float | None) -> str:
    """Four decimals, or scientific notation where they would hide the value (0.0000)."""
    if loss is None:
        return "-"
    return f"{loss:.3e}" if loss != 0 and not 1e-3 <= abs(loss) < 1e6 else f"{loss:.4f}"


def format_time(seconds: float) -> str:
    return f"{seconds:.1f}s" if seconds < 60 else f"{int(seconds // 60)}m{seconds % 60:04.1f}s"


def remaining_time(elapsed_s: float, step: int, total_steps: int) -> float:
    """The run's time still to go, at the pace so far (training time: evaluations excluded)."""
    return elapsed_s / step * max(0, total_steps - step) if step > 0 else 0.0


class EpochRows:
    """The rows of the epoch table, kept as plain values: the gradient norm is the epoch's last logged one."""

    # The newest rows only: a terminal shows fewer, and a run of a million tiny epochs keeps its memory.
    KEPT = 500

    def __init__(self) -> None:
        self.rows: deque[tuple[EpochRecord, float | None]] = deque(maxlen=self.KEPT)
        self.count = 0  # rows seen, kept or not
        self.last_grad_norm: float | None = None
        self.epochs = 0
        self.validation: list[str] = []  # the validation columns seen (val_loss, val_accuracy, ...)

    def handle(self, record: Record) -> tuple[EpochRecord, float | None] | None:
        if type(record) is StepRecord:  # (the common case, tested first and cheaply)
            self.last_grad_norm = record.grad_norm
        elif isinstance(record, RunStarted):
            self.epochs = record.epochs
        elif isinstance(record, EpochRecord):
            row = (record, self.last_grad_norm)
            self.rows.append(row)
            self.count += 1
            self.validation += [
                name for name in record.metrics if name.startswith("val_") and name not in self.validation
            ]
            return row
        return None

    def columns(self) -> list[str]:
        columns = ["epoch", "step", "train loss", "lr", "grad norm", "time"]
        columns[3:3] = [
            _HEADERS.get(name, name.removeprefix("val_").replace("_", " ")) for name in self.validation
        ]
        return columns

    def cells(self, row: tuple[EpochRecord, float | None]) -> list[str]:
        epoch, grad_norm = row
        cells = [
            f"{epoch.epoch}/{self.epochs}",
            str(epoch.step),
            format_loss(epoch.train_loss),
            format_lr(epoch.lr),
            "-" if grad_norm is None else f"{grad_norm:.3f}",
            format_time(epoch.elapsed_s),
        ]
        cells[3:3] = [
            format_loss(epoch.metrics.get(name))
            if name == "val_loss"
            else format_metric(name, epoch.metrics.get(name))
            for name in self.validation
        ]
        return cells


_HEADERS = {"val_loss": "val loss", "val_accuracy": "val acc"}


class LiveDisplay:
    """A table with a row per epoch and a progress bar through the current epoch (on a terminal)."""

    def __init__(self, console: Console, title: str) -> None:
        self.console = console
        self.title = title
        self.rows = EpochRows()
        self.progress = Progress(
            TextColumn("[bold]epoch {task.fields[epoch]}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]}"),
            TimeElapsedColumn(),
            TextColumn("eta {task.fields[eta]}"),
            console=console,
            auto_refresh=False,  # the Live below does the redrawing
        )
        self.task = self.progress.add_task("train", total=None, epoch="1", loss="-", eta="-")
        self.total_steps = 0
        self._next_progress_update = 0.0
        self._next_table_update = 0.0
        self._last_step: StepRecord | None = None
        self.live = Live(
            self._render(), console=console, refresh_per_second=REFRESHES_PER_SECOND, transient=False
        )
        self.live.start()

    def _render(self) -> Group:
        table = Table(title=self.title, title_justify="left", expand=False)
        for column in self.rows.columns():
            table.add_column(column, justify="right")
        # Keep the table within the terminal: older epochs stay in epochs.csv.
        room = max(5, shutil.get_terminal_size().lines - 8)
        shown = list(self.rows.rows)[-room:]
        if len(shown) < self.rows.count:
            table.caption = f"{self.rows.count - len(shown)} earlier epochs in epochs.csv"
        for row in shown:
            table.add_row(*self.rows.cells(row))
        return Group(table, self.progress)

    def handle(self, record: Record) -> None:
        row = self.rows.handle(record)
        if isinstance(record, RunStarted):
            self.progress.update(self.task, total=record.steps_per_epoch, completed=0)
            self.total_steps = record.total_steps
        elif isinstance(record, StepRecord):
            self._last_step = record
            # The bar is redrawn a few times a second at most, so updating it every step would be waste.
            if time.perf_counter() >= self._next_progress_update:
                self._next_progress_update = time.perf_counter() + 0.5 / REFRESHES_PER_SECOND
                self._show_step(record)
        elif isinstance(record, SkippedStep):
            self.console.print(skipped_step_warning(record), markup=False, highlight=False)
        if row is not None and time.perf_counter() >= self._next_table_update:
            # (at most as often as the terminal is redrawn: a run of tiny epochs ends thousands a second)
            self._next_table_update = time.perf_counter() + 1 / REFRESHES_PER_SECOND
            self.live.update(self._render())

    def _show_step(self, record: StepRecord) -> None:
        steps_per_epoch = int(self.progress.tasks[0].total or 1)
        self.progress.update(
            self.task,
            completed=record.step - (record.epoch - 1) * steps_per_epoch,
            epoch=f"{record.epoch}/{self.rows.epochs}",
            loss=format_loss(record.loss),
            eta=format_time(remaining_time(record.elapsed_s, record.step, self.total_steps)),
        )

    def close(self, outcome: RunOutcome) -> None:
        if self._last_step is not None:
            self._show_step(self._last_step)
        self.live.update(self._render())
        self.live.stop()


class PlainDisplay:
    """One line per epoch, for logs and pipes."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.rows = EpochRows()

    def handle(self, record: Record) -> None:
        row = self.rows.handle(record)
        if isinstance(record, SkippedStep):
            print(skipped_step_warning(record), file=sys.stderr, flush=True)
        if row is not None:
            cells = self.rows.cells(row)
            keys = [column.replace(" ", "_") for column in self.rows.columns()]
            pairs = zip(keys, cells, strict=True)
            print("  ".join(f"{key} {value}" for key, value in pairs), file=self.stream, flush=True)

    def close(self, outcome: RunOutcome) -> None:
        pass


class QuietDisplay:
    """Nothing while training but warnings: `--quiet` prints only the final summary line."""

    def handle(self, record: Record) -> None:
        if isinstance(record, SkippedStep):
            print(skipped_step_warning(record), file=sys.stderr, flush=True)

    def close(self, outcome: RunOutcome) -> None:
        pass


def make_display(title: str, quiet: bool) -> Sink:
    """The live table on a terminal, plain lines in logs and pipes, or nothing but warnings (--quiet)."""
    console = Console()
    if quiet:
        return QuietDisplay()
    if console.is_terminal:
        return LiveDisplay(console, title)
    return PlainDisplay(sys.stdout)


def summary_line(summary: dict[str, object], run_dir: Path) -> str:
    """The final line of `train` and `resume`: how the run ended, its losses, and where its files are."""

    def number(key: str, percent: bool = False) -> str:
        value = summary.get(key)
        if not isinstance(value, float):
            return "-"
        return f"{value:.2%}" if percent else format_loss(value)

    parts = [
        f"{summary['status']} {summary['name']}: {summary['steps']} steps, {summary['epochs']} epochs "
        f"in {summary['train_time_s']:.1f}s ({summary['steps_per_second'] or 0:.0f} steps/s) on "
        f"{summary['device']}; final loss {number('final_loss')}, best {number('best_loss')} "
        f"(epoch {summary['best_epoch']})"
    ]
    if "final_val_loss" in summary:
        parts.append(f"val loss {number('final_val_loss')} (best {number('best_val_loss')})")
    if "final_val_accuracy" in summary:
        parts.append(
            f"val accuracy {number('final_val_accuracy', True)} (best {number('best_val_accuracy', True)})"
        )
    if isinstance(summary.get("final_val_r2"), float):
        parts.append(f"val R² {summary['final_val_r2']:.4f} (RMSE {number('final_val_rmse')})")
    shown = {"final_val_loss", "final_val_accuracy", "final_val_r2", "final_val_rmse", "final_val_mae"}
    for key, value in summary.items():  # the metrics the config named
        if key.startswith("final_val_") and key not in shown and isinstance(value, float):
            name = key.removeprefix("final_")
            best = summary.get(f"best_{name}")
            best = best if isinstance(best, float) else None
            parts.append(
                f"{name.replace('_', ' ', 1)} {format_metric(name, value)} (best {format_metric(name, best)})"
            )
    if "test_loss" in summary:
        parts.append(f"test loss {number('test_loss')}")
    if isinstance(summary.get("test_accuracy"), float):
        parts.append(f"test accuracy {number('test_accuracy', True)}")
    stopped = summary.get("stopped_early")
    if isinstance(stopped, dict):
        parts.append(f"stopped early: {stopped['reason']}")
    return "; ".join(parts) + f" -> {run_dir}"
