"""Sinks that turn the loop's records into files: metrics.csv, epochs.csv and summary.json.

A sink sees every record in order (`handle`) and is told how the run ended (`close`). Sinks never
reach back into the loop.
"""

from __future__ import annotations

import csv
import json
import math
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TextIO

import torch

from optcli import __version__
from optcli.records import EpochRecord, Record, RunFinished, RunStarted, StepRecord
from optcli.rundir import write_atomically

METRICS_COLUMNS = ("step", "epoch", "loss", "lr", "grad_norm", "elapsed_s")
EPOCHS_COLUMNS = ("epoch", "step", "train_loss", "lr", "elapsed_s")


class Sink(Protocol):
    def handle(self, record: Record) -> None: ...

    def close(self, outcome: RunOutcome) -> None: ...


@dataclass
class RunOutcome:
    """How a run ended: `status` is completed, failed or interrupted; `error` says why when it failed."""

    status: str
    error: str | None = None


def format_number(value: float | None) -> str:
    """Full precision (repr round-trips exactly), so the CSV holds the very values the loop produced."""
    return "" if value is None else repr(float(value))


# How long a logged row may wait in memory before it is handed to the OS. A system call per row
# would cost about 1.5% of a small model's training speed; a process that is killed outright
# (SIGKILL, out of memory) loses at most this much. Python errors and interrupts lose nothing: the
# files are flushed when the run ends, however it ends.
FLUSH_INTERVAL_S = 0.5


class CsvWriter:
    """metrics.csv (one row per logged step) and epochs.csv (one per epoch), written as training goes."""

    def __init__(self, run_dir: Path) -> None:
        self._metrics_file, self._metrics = _open_csv(run_dir / "metrics.csv", METRICS_COLUMNS)
        self._epochs_file, self._epochs = _open_csv(run_dir / "epochs.csv", EPOCHS_COLUMNS)
        self._next_flush = time.perf_counter() + FLUSH_INTERVAL_S

    def flush(self) -> None:
        self._metrics_file.flush()
        self._epochs_file.flush()
        self._next_flush = time.perf_counter() + FLUSH_INTERVAL_S

    def handle(self, record: Record) -> None:
        if isinstance(record, StepRecord):
            self._metrics.writerow(
                [
                    record.step,
                    record.epoch,
                    format_number(record.loss),
                    format_number(record.lr),
                    format_number(record.grad_norm),
                    f"{record.elapsed_s:.6f}",
                ]
            )
            if time.perf_counter() >= self._next_flush:
                self.flush()
        elif isinstance(record, EpochRecord):
            self._epochs.writerow(
                [
                    record.epoch,
                    record.step,
                    format_number(record.train_loss),
                    format_number(record.lr),
                    f"{record.elapsed_s:.6f}",
                ]
            )
            self.flush()  # every epoch's rows reach the OS when the epoch ends

    def close(self, outcome: RunOutcome) -> None:
        self._metrics_file.close()
        self._epochs_file.close()


def _open_csv(path: Path, columns: tuple[str, ...]) -> tuple[TextIO, Any]:
    stream = path.open("w", newline="", encoding="utf-8")
    writer = csv.writer(stream)
    writer.writerow(columns)
    stream.flush()
    return stream, writer


@dataclass
class SummaryWriter:
    """Gathers what summary.json reports and writes it, atomically, however the run ends."""

    run_dir: Path
    identity: dict[str, Any]  # name, seed, device, config hash: known before training starts
    started_at: float = field(default_factory=time.time)
    steps: int = 0
    epochs: int = 0
    train_time_s: float = 0.0
    final_loss: float | None = None
    best_loss: float | None = None
    best_epoch: int | None = None
    summary: dict[str, Any] = field(default_factory=dict)

    def handle(self, record: Record) -> None:
        if isinstance(record, StepRecord):
            self.steps, self.epochs = record.step, record.epoch
            self.train_time_s = record.elapsed_s
        elif isinstance(record, EpochRecord):
            self.steps, self.epochs, self.train_time_s = record.step, record.epoch, record.elapsed_s
            self.final_loss = record.train_loss
            if math.isfinite(record.train_loss) and (
                self.best_loss is None or record.train_loss < self.best_loss
            ):
                self.best_loss, self.best_epoch = record.train_loss, record.epoch
        elif isinstance(record, RunFinished):
            self.steps, self.epochs, self.train_time_s = record.steps, record.epochs, record.train_time_s
        elif isinstance(record, RunStarted):
            self.summary.update(
                parameters=record.parameters, init_hash=record.init_hash, data_hash=record.data_hash
            )

    def close(self, outcome: RunOutcome) -> None:
        finished_at = time.time()
        self.summary = {
            **self.identity,
            "status": outcome.status,
            "error": outcome.error,
            "final_loss": self.final_loss,
            "best_loss": self.best_loss,
            "best_epoch": self.best_epoch,
            "steps": self.steps,
            "epochs": self.epochs,
            "train_time_s": round(self.train_time_s, 6),
            "wall_time_s": round(finished_at - self.started_at, 6),
            "steps_per_second": round(self.steps / self.train_time_s, 3) if self.train_time_s > 0 else None,
            "parameters": self.summary.get("parameters"),
            "init_hash": self.summary.get("init_hash"),
            "data_hash": self.summary.get("data_hash"),
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
