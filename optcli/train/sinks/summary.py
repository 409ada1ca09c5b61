"""summary.json: what a run reports of itself (its identity, losses, validation, resumes), written
atomically however the run ends."""

from __future__ import annotations

import json
import math
import platform
import time
from pathlib import Path
from typing import Any, TypedDict

import torch

from optcli import __version__
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
from optcli.train.sinks import RunOutcome


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
