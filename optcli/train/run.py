"""One training run from a validated RunSpec: its directory, its live objects, its records and sinks.

A new run starts in a new directory; a resumed run continues in its own from a checkpoint, with its
CSV files cut back to what they held when the checkpoint was written.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from optcli.config.spec import RunSpec
from optcli.errors import ConfigError, TrainingFailed
from optcli.seeds import derive_seed
from optcli.train.checkpoints import CheckpointWriter, apply_optimizer_arguments, restore_session
from optcli.train.interrupts import StopRequests
from optcli.train.loop import LoopState, run_training
from optcli.train.rundir import create_run_dir, write_atomically, write_yaml
from optcli.train.session import build_session
from optcli.train.sinks import CsvWriter, RunOutcome, Sink, SummaryWriter


@dataclass(frozen=True)
class RunResult:
    run_dir: Path
    summary: dict[str, Any]


@dataclass(frozen=True)
class ResumePoint:
    """A checkpoint to continue from, and how the config now differs from the checkpoint's."""

    checkpoint: dict[str, Any]
    changes: list[str] = field(default_factory=list)


def run_identity(spec: RunSpec) -> dict[str, Any]:
    """What summary.json says about the run before it starts."""
    return {
        "name": spec.name,
        "seed": spec.seed,
        "device": spec.device,
        "config_hash": spec.config_hash,
        "planned_steps": spec.total_steps,
        "planned_epochs": spec.epochs,
        "determinism": {
            "deterministic_algorithms": spec.deterministic,
            "cudnn_benchmark": torch.backends.cudnn.benchmark,
            "seeds": {
                "run": spec.seed,
                "data": derive_seed(spec.seed, "data"),
                "split": derive_seed(spec.seed, "split"),
                "data_order": derive_seed(spec.seed, "shuffle"),
            },
        },
    }


def train(
    spec: RunSpec,
    displays: Sequence[Sink] = (),
    run_dir: Path | None = None,
    resume: ResumePoint | None = None,
) -> RunResult:
    """Train one run; raise TrainingFailed (after writing summary.json) if it fails, Interrupted (after
    writing a checkpoint) on Ctrl-C or SIGTERM.

    `run_dir` is created when not given: `<output.dir>/<name>/<timestamp>/`.
    """
    if run_dir is None:
        run_dir = create_run_dir(Path(spec.output.dir), spec.name)
    header = f"# The resolved config of run {spec.name}: every default and filled-in value.\n"
    write_yaml(run_dir / "config.yaml", spec.resolved, header)
    summary = SummaryWriter(run_dir, run_identity(spec))
    csv_writer = CsvWriter(
        run_dir,
        spec.data.has_validation,
        spec.train.eval_every is not None,
        resume.checkpoint["csv_sizes"] if resume else None,
    )
    sinks: list[Sink] = [csv_writer, summary, *displays]
    checkpoints: CheckpointWriter | None = None
    outcome = RunOutcome("failed", "training did not start")
    try:
        session = build_session(spec)
        state: LoopState | None = None
        checkpoints = CheckpointWriter(run_dir, session, csv_writer, summary)
        if resume is not None:
            state = _resume(session, resume, summary, checkpoints)
        sinks.insert(2, checkpoints)  # after the CSV files and the summary, whose state it saves
        # What the model sees of the data: sizes, class names, normalization statistics.
        write_atomically(run_dir / "data.json", json.dumps(session.data_description, indent=2) + "\n")
        with StopRequests().installed() as stop:
            for record in run_training(session, state, stop):
                for sink in sinks:
                    sink.handle(record)
        outcome = RunOutcome("completed")
    except ConfigError:
        outcome = RunOutcome("failed", "the run could not start")
        raise
    except TrainingFailed as error:
        if checkpoints is not None and checkpoints.last_written:
            error.args = (
                f"{error}\nthe last good checkpoint: checkpoints/last.pt ({checkpoints.last_written})",
            )
        outcome = RunOutcome("failed", str(error))
        error.run_dir = run_dir
        raise
    except KeyboardInterrupt:
        outcome = RunOutcome("interrupted", "interrupted by the user; optcli resume continues the run")
        raise
    except OSError as error:
        outcome = RunOutcome("failed", f"cannot write the run's files: {error}")
        failure = TrainingFailed(f"cannot write the run's files in {run_dir}: {error.strerror or error}")
        failure.run_dir = run_dir
        raise failure from error
    except Exception as error:
        outcome = RunOutcome("failed", f"{type(error).__name__}: {error}")
        failure = TrainingFailed(f"training failed: {type(error).__name__}: {error}")
        failure.run_dir = run_dir
        raise failure from error
    finally:
        # Every sink is closed, whatever happened, so the files on disk say how the run ended.
        for sink in sinks:
            with contextlib.suppress(Exception):
                sink.close(outcome)
    return RunResult(run_dir, summary.summary)


def _resume(
    session: Any, resume: ResumePoint, summary: SummaryWriter, checkpoints: CheckpointWriter
) -> LoopState:
    checkpoint = resume.checkpoint
    state = restore_session(session, checkpoint)
    if any(change.startswith("optimizer.") for change in resume.changes):
        apply_optimizer_arguments(session)
    summary.restore(checkpoint["summary"])
    summary.summary["resumes"].append(
        {
            "at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "from_epoch": state.epoch if state.batches_done else state.epoch - 1,
            "from_step": state.step,
            "changes": resume.changes,
        }
    )
    checkpoints.best = checkpoint["best"]
    return state
