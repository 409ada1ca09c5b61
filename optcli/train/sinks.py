"""Sinks that turn the loop's records into files: metrics.csv, epochs.csv and summary.json.

A sink sees every record in order (`handle`) and is told how the run ended (`close`). Sinks never
reach back into the loop.
"""

from __future__ import annotations

import csv
import json
import math
import os
import platform
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol, TextIO, TypedDict

import torch

from optcli import __version__
from optcli.errors import ConfigError, TrainingFailed
from optcli.train.records import (
    EpochRecord,
    EvalRecord,
    Record,
    RunFinished,
    RunStarted,
    SkippedStep,
    StepRecord,
)
from optcli.train.rundir import write_atomically

METRICS_COLUMNS = ("step", "epoch", "loss", "lr", "grad_norm", "elapsed_s")
# With parameter groups or parts, metrics.csv adds their rates last (RunSpec.rate_columns).
EPOCHS_COLUMNS = ("epoch", "step", "train_loss", "lr", "elapsed_s")
# epochs.csv adds the run's validation metrics (config/metrics.py); evals.csv holds them, between
# step, epoch and elapsed_s.


class Sink(Protocol):
    def handle(self, record: Record) -> None: ...

    def close(self, outcome: RunOutcome) -> None: ...


RunStatus = Literal["completed", "failed", "interrupted"]


@dataclass(frozen=True)
class RunOutcome:
    """How a run ended, and why when it failed."""

    status: RunStatus
    error: str | None = None
    diverged: bool = False  # failed because the loss became non-finite: in a comparison, a result


def format_number(value: float | None) -> str:
    """Full precision (repr round-trips exactly), so the CSV holds the very values the loop produced."""
    return "" if value is None else repr(float(value))


# How long a logged row may wait in memory before it is handed to the OS. A system call per row
# would cost about 1.5% of a small model's training speed; a process that is killed outright
# (SIGKILL, out of memory) loses at most this much. Python errors and interrupts lose nothing: the
# files are flushed when the run ends, however it ends.
FLUSH_INTERVAL_S = 0.5


class CsvWriter:
    """metrics.csv (one row per logged step), epochs.csv (one per epoch) and, with `train.eval_every`,
    evals.csv (one per evaluation within an epoch), written as training goes."""

    def __init__(
        self,
        run_dir: Path,
        validation: tuple[str, ...] = (),
        evaluations: bool = False,
        resume_sizes: dict[str, int] | None = None,
        rate_columns: tuple[str, ...] = (),
    ) -> None:
        """`validation`: the validation metrics' columns (RunSpec.validation_metrics); `resume_sizes`:
        continue files cut back to these byte sizes (what a checkpoint recorded); `rate_columns`: the
        rates logged beside `lr` (RunSpec.rate_columns: lr_group1, ...; lr_muon, ...)."""
        self.validation = validation
        self.group_columns = len(rate_columns)
        step_columns = METRICS_COLUMNS + rate_columns
        files = {"metrics.csv": step_columns, "epochs.csv": EPOCHS_COLUMNS + validation}
        if evaluations:
            files["evals.csv"] = ("step", "epoch", *validation, "elapsed_s")
        opened = {name: _open_csv(run_dir / name, columns, resume_sizes) for name, columns in files.items()}
        self._files = {name: stream for name, (stream, _) in opened.items()}
        self._metrics, self._epochs = opened["metrics.csv"][1], opened["epochs.csv"][1]
        self._evals = opened["evals.csv"][1] if evaluations else None
        if resume_sizes is not None:
            # A run begun by a version of optcli that wrote no group columns goes on without them.
            self.group_columns = min(len(rate_columns), _header(run_dir / "metrics.csv").count("lr_"))
        self.run_dir, self._identity = run_dir, _identity(run_dir)
        self._next_flush = time.perf_counter() + FLUSH_INTERVAL_S
        # Step rows are kept as records and written in one go at each flush: formatting them in a
        # tight loop costs a fraction of formatting each between two training steps.
        self._steps: list[StepRecord] = []

    def flush(self) -> None:
        # The files are open, so rows would still land in a deleted directory's files, unseen: a run
        # whose directory is gone (or replaced) stops instead of reporting a success nobody can read.
        if _identity(self.run_dir) != self._identity:
            raise TrainingFailed(run_directory_gone(self.run_dir))
        for name, stream in self._files.items():  # a file deleted or replaced alone: the same
            status = os.fstat(stream.fileno())
            if _identity(self.run_dir / name) != (status.st_dev, status.st_ino):
                raise TrainingFailed(
                    f"{self.run_dir / name} was deleted or replaced while the run was going; the run stopped "
                    "(the rows written to it are lost: start a new run)"
                )
        self._metrics.writerows(
            (
                step.step,
                step.epoch,
                format_number(step.loss),
                format_number(step.lr),
                format_number(step.grad_norm),
                f"{step.elapsed_s:.6f}",
                *(format_number(rate) for rate in step.group_lrs[: self.group_columns]),
            )
            for step in self._steps
        )
        self._steps.clear()
        for stream in self._files.values():
            stream.flush()
        self._next_flush = time.perf_counter() + FLUSH_INTERVAL_S

    def sizes(self) -> dict[str, int]:
        """Every file's size once flushed: where a resumed run cuts them back to."""
        self.flush()
        return {name: stream.tell() for name, stream in self._files.items()}

    def handle(self, record: Record) -> None:
        if type(record) is StepRecord:  # (the common case, tested first and cheaply)
            self._steps.append(record)
            if time.perf_counter() >= self._next_flush:
                self.flush()
        elif isinstance(record, EpochRecord):
            row = [
                record.epoch,
                record.step,
                format_number(record.train_loss),
                format_number(record.lr),
                f"{record.elapsed_s:.6f}",
            ]
            row += [format_number(record.metrics.get(metric)) for metric in self.validation]
            self._epochs.writerow(row)
            self.flush()  # every epoch's rows reach the OS when the epoch ends
            self._write_tables(record.tables, "")
        elif isinstance(record, EvalRecord):
            if record.split == "val" and self._evals is not None:
                values = [
                    format_number(record.metrics.get(metric.removeprefix("val_")))
                    for metric in self.validation
                ]
                self._evals.writerow([record.step, record.epoch, *values, f"{record.elapsed_s:.6f}"])
            self._write_tables(record.tables, "test_" if record.split == "test" else "")

    def _write_tables(self, tables: dict[str, list[list[int]]], prefix: str) -> None:
        """Metrics written as files (the confusion matrix), the latest evaluation's: a row per true
        class, a column per predicted class."""
        for name, rows in tables.items():
            header = ["true \\ predicted", *range(len(rows))]
            lines = [header, *([number, *row] for number, row in enumerate(rows))]
            text = "".join(",".join(str(cell) for cell in line) + "\n" for line in lines)
            write_atomically(self.run_dir / f"{prefix}{name}.csv", text)

    def close(self, outcome: RunOutcome) -> None:
        try:
            self.flush()
        finally:
            for stream in self._files.values():
                stream.close()


def run_directory_gone(run_dir: Path) -> str:
    return (
        f"the run directory {run_dir} was deleted or replaced while the run was going; the run stopped "
        "(its rows and checkpoints were in it)"
    )


def _identity(directory: Path) -> tuple[int, int] | None:
    try:
        status = directory.stat()
    except OSError:
        return None
    return status.st_dev, status.st_ino


def _header(path: Path) -> str:
    with path.open(encoding="utf-8") as stream:
        return stream.readline()


def _open_csv(
    path: Path, columns: tuple[str, ...], resume_sizes: dict[str, int] | None
) -> tuple[TextIO, Any]:
    if resume_sizes is not None and path.name in resume_sizes and path.exists():
        # Rows logged after the checkpoint are dropped: the resumed run logs them again, exactly.
        # (Never through a link, and never longer: truncate() would pad with NUL bytes. The resume
        # refused both before it started; this keeps the promise whoever calls it.)
        size = resume_sizes[path.name]
        if path.is_symlink() or path.stat().st_size < size:
            raise ConfigError(f"{path}: not the file the checkpoint recorded ({size} bytes); not resumed")
        with path.open("r+b") as raw:
            raw.truncate(size)
        stream = path.open("a", newline="", encoding="utf-8")
        return stream, csv.writer(stream)
    stream = path.open("w", newline="", encoding="utf-8")
    writer = csv.writer(stream)
    writer.writerow(columns)
    stream.flush()
    return stream, writer


class SummaryState(TypedDict):
    """What a checkpoint keeps of the summary, so that a resumed run's summary covers the whole run."""

    final_loss: float | None
    best_loss: float | None
    best_epoch: int | None
    validation: dict[str, Any]  # final and best val_loss / val_accuracy, and the best's epoch
    parameters: int | None
    resumes: list[dict[str, Any]]  # one entry per resume: when, from where, with which changes
    skipped_steps: int


class SummaryWriter:
    """Gathers what summary.json reports and writes it, atomically, however the run ends."""

    def __init__(self, run_dir: Path, identity: dict[str, Any], restored: SummaryState | None = None) -> None:
        self.run_dir = run_dir
        self.identity = identity  # name, seed, device, config hash: known before training starts
        self.started_at = time.time()
        self.state = restored or SummaryState(
            final_loss=None,
            best_loss=None,
            best_epoch=None,
            validation={},
            parameters=None,
            resumes=[],
            skipped_steps=0,
        )
        self.steps = self.epochs = 0
        self.train_time_s = 0.0
        self.test: dict[str, Any] = {}
        self.hashes: dict[str, str] = {}
        self.stopped_early: dict[str, Any] | None = None
        self.extra: dict[str, Any] = {}  # what only some runs have (every parameter group's final rate)
        self.summary: dict[str, Any] = {}  # what was written last

    def note_resume(self, entry: dict[str, Any]) -> None:
        """A resume of the run: when, from which epoch and step, with which config changes."""
        self.state["resumes"].append(entry)

    def handle(self, record: Record) -> None:
        state = self.state
        if isinstance(record, StepRecord):
            self.steps, self.epochs, self.train_time_s = record.step, record.epoch, record.elapsed_s
        elif isinstance(record, EpochRecord):
            self.steps, self.epochs, self.train_time_s = record.step, record.epoch, record.elapsed_s
            state["final_loss"] = record.train_loss
            if "train_loss" in record.improved:
                state["best_loss"], state["best_epoch"] = record.train_loss, record.epoch
            for metric, value in record.metrics.items():
                if not metric.startswith("val_"):
                    continue
                state["validation"][f"final_{metric}"] = value
                if metric in record.improved:
                    state["validation"][f"best_{metric}"] = value
                    state["validation"][f"best_{metric}_epoch"] = record.epoch
        elif isinstance(record, SkippedStep):
            state["skipped_steps"] += 1
        elif isinstance(record, EvalRecord) and record.split == "test":
            self.test = {
                "test_loss": record.loss,
                "test_accuracy": record.accuracy,
                **{f"test_{name}": value for name, value in record.metrics.items()},
                "test_on": record.weights,
                "test_weights_epoch": record.weights_epoch,
            }
        elif isinstance(record, RunStarted):
            state["parameters"] = record.parameters
            self.hashes = {"init_hash": record.init_hash, "data_hash": record.data_hash}
        elif isinstance(record, RunFinished):
            self.steps, self.epochs, self.train_time_s = record.steps, record.epochs, record.train_time_s
            if record.stopped_early:
                self.stopped_early = {
                    "epoch": record.epochs,
                    "step": record.steps,
                    "reason": record.stopped_early,
                }
            if len(record.final_lrs) > 1:  # parameter groups: each one's rate, the default group's first
                self.extra["final_lrs"] = list(record.final_lrs)
            self.extra.update({key: value for key, value in record.extra.items() if value is not None})

    def close(self, outcome: RunOutcome) -> None:
        finished_at = time.time()
        state = self.state
        self.summary = {
            **self.identity,
            "status": outcome.status,
            "error": outcome.error,
            **({"diverged": outcome.diverged} if outcome.status == "failed" else {}),
            "final_loss": state["final_loss"],
            "best_loss": state["best_loss"],
            "best_epoch": state["best_epoch"],
            **state["validation"],
            **self.test,
            "stopped_early": self.stopped_early,
            **self.extra,
            "skipped_steps": state["skipped_steps"],
            "resumes": state["resumes"],
            "steps": self.steps,
            "epochs": self.epochs,
            "train_time_s": round(self.train_time_s, 6),
            "wall_time_s": round(finished_at - self.started_at, 6),
            "steps_per_second": round(self.steps / self.train_time_s, 3) if self.train_time_s > 0 else None,
            "parameters": state["parameters"],
            "init_hash": self.hashes.get("init_hash"),
            "data_hash": self.hashes.get("data_hash"),
            "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(self.started_at)),
            "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(finished_at)),
            "torch_version": torch.__version__,
            "optcli_version": __version__,
            "python_version": platform.python_version(),
        }
        # JSON has no NaN or infinity: a diverged loss is written as null, and `error` says why.
        clean = {key: _json_safe(value) for key, value in self.summary.items()}
        write_atomically(self.run_dir / "summary.json", json.dumps(clean, indent=2) + "\n")


def _json_safe(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
