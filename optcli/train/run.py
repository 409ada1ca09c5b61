"""One training run from a validated RunSpec: its directory, its live objects, the loop, its sinks
and checkpoints.

A new run starts in a new directory; a resumed run continues in its own from a checkpoint, with its
CSV files cut back to what they held when the checkpoint was written.
"""

from __future__ import annotations

import contextlib
import hashlib
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from optcli.config.spec import RunSpec
from optcli.errors import CANCELLATIONS, COULD_NOT_START, ConfigError, Interrupted, TrainingFailed
from optcli.process.interrupts import StopRequests
from optcli.seeds import derived_seeds
from optcli.train.checkpointer import Checkpointer
from optcli.train.checkpoints import Checkpoint, data_json
from optcli.train.distributed import ALONE, World, agree, barrier, share
from optcli.train.loop import run_training
from optcli.train.records import CheckpointDue
from optcli.train.restoring import apply_optimizer_arguments, apply_scheduler_arguments, restore_session
from optcli.train.rundir import create_run_dir, write_atomically, write_yaml, writer_lock
from optcli.train.session import Session, build_session, threads_restored, with_threads_chosen
from optcli.train.sinks import RunOutcome, Sink
from optcli.train.sinks.csv_files import CsvWriter, run_directory_gone
from optcli.train.sinks.mlflow_logging import Tracking
from optcli.train.sinks.summary import SummaryWriter
from optcli.train.state import LoopState


@dataclass(frozen=True)
class TrainedRun:
    """Where a finished run's files are, and what its summary.json says."""

    run_dir: Path
    summary: dict[str, Any]


@dataclass(frozen=True)
class ResumePoint:
    """A checkpoint to continue from, and how the config now differs from the checkpoint's."""

    checkpoint: Checkpoint
    changes: list[str] = field(default_factory=list)
    note: str = ""  # what the user should hear about the checkpoint chosen (a damaged last.pt)


def code_hashes(files: list[str]) -> dict[str, str]:
    """SHA-256 of each Python file of the user's that a run imports."""
    return {
        file: hashlib.sha256(Path(file).read_bytes()).hexdigest() for file in files if Path(file).is_file()
    }


def run_identity(spec: RunSpec) -> dict[str, Any]:
    """What summary.json says about the run before it starts."""
    return {
        "name": spec.name,
        "seed": spec.seed,
        "device": spec.device,
        "config_hash": spec.config_hash,
        "init_from": spec.model_init.path if spec.model_init else None,
        "code_sha256": code_hashes(spec.user_files()),  # so that using the run later notices edits
        "planned_steps": spec.total_steps,
        "planned_epochs": spec.epochs,
        "determinism": {
            "deterministic_algorithms": spec.deterministic,
            "cudnn_benchmark": torch.backends.cudnn.benchmark,
            "seeds": derived_seeds(spec.seed),
        },
    }


def train_run(
    spec: RunSpec,
    displays: Sequence[Sink] = (),
    run_dir: Path | None = None,
    resume: ResumePoint | None = None,
    world: World = ALONE,
    tracking: Tracking | None = None,
) -> TrainedRun:
    """Train one run; raise TrainingFailed (after writing summary.json) if it fails, Interrupted (after
    writing a checkpoint) on Ctrl-C or SIGTERM.

    `run_dir` is created when not given: `<output.dir>/<name>/<timestamp>/`. With several processes
    (`world`), every one trains and only rank 0 writes files (and shows `displays`). `tracking`: a
    comparison's place for the run's MLflow run (output.mlflow), its parent and tags.
    """
    spec = with_threads_chosen(spec)  # train.threads: auto, as the number config.yaml records
    new = run_dir is None
    if run_dir is None:
        run_dir = share(world, create_run_dir(Path(spec.output.dir), spec.name) if world.is_main else None)
    try:
        with writer_lock(run_dir, "run") if world.is_main else contextlib.nullcontext(), threads_restored():
            return _train_locked(spec, displays, run_dir, resume, world, tracking)
    except OSError as error:  # the lock or the first files could not be written (a full disk)
        if new and world.is_main:  # nothing of the run is worth keeping: no half-made run directory
            shutil.rmtree(run_dir, ignore_errors=True)
        where = error.filename or run_dir
        kept = "" if new else f"; what was written before is in {run_dir}, as it was"
        raise TrainingFailed(
            f"cannot write the run's files ({where}): {error.strerror or error}{kept}"
        ) from None


def _train_locked(
    spec: RunSpec,
    displays: Sequence[Sink],
    run_dir: Path,
    resume: ResumePoint | None,
    world: World,
    tracking: Tracking | None,
) -> TrainedRun:
    checkpoint = resume.checkpoint if resume else None
    files = _open_files(spec, run_dir, checkpoint, tracking) if world.is_main else None
    sinks: list[Sink] = [*files.sinks, *displays] if files else []
    checkpointer: Checkpointer | None = None
    outcome = RunOutcome("failed", "training did not start")
    try:
        session = build_session(spec, world)
        checkpointer = Checkpointer(run_dir, session)
        state = _restore(session, resume, files.summary if files else None) if resume is not None else None
        if files:  # what the model sees of the data: sizes, class names, normalization statistics
            write_atomically(run_dir / "data.json", data_json(session.data_description))
        _drive(session, state, sinks, checkpointer, files)
        outcome = RunOutcome("completed")
    except ConfigError:
        outcome = RunOutcome("failed", COULD_NOT_START)
        raise
    except TrainingFailed as error:
        if not run_dir.is_dir():  # nothing of it is left to point at
            outcome = RunOutcome("failed", str(error))
            raise TrainingFailed(run_directory_gone(run_dir)) from error
        last = checkpointer.last_written if checkpointer else None
        message = f"{error}\nthe last good checkpoint: checkpoints/last.pt ({last})" if last else str(error)
        outcome = RunOutcome("failed", message, error.diverged)
        raise TrainingFailed(message, run_dir=run_dir, diverged=error.diverged) from error
    except Interrupted:
        resumable = spec.train.checkpoint
        what_next = (
            "optcli resume continues the run" if resumable else "no checkpoint (train.checkpoint: false)"
        )
        outcome = RunOutcome("interrupted", f"interrupted by the user; {what_next}")
        raise Interrupted(run_dir, resumable) from None
    except KeyboardInterrupt:  # a second Ctrl-C, at once: no checkpoint of this moment
        outcome = RunOutcome("interrupted", "interrupted by the user; optcli resume continues the run")
        raise
    except OSError as error:
        outcome = RunOutcome("failed", f"cannot write the run's files: {error}")
        if not run_dir.is_dir():  # a checkpoint's write found it gone before the CSV files did
            raise TrainingFailed(run_directory_gone(run_dir)) from error
        message = f"cannot write the run's files in {run_dir}: {error.strerror or error}"
        raise TrainingFailed(message, run_dir=run_dir) from error
    except Exception as error:
        if isinstance(error, tuple(CANCELLATIONS)):  # an executor cancelled the run (Ray, on Ctrl-C)
            outcome = RunOutcome("interrupted", "cancelled; optcli compare --resume continues the comparison")
            raise KeyboardInterrupt from None
        outcome = RunOutcome("failed", f"{type(error).__name__}: {error}")
        raise TrainingFailed(f"training failed: {type(error).__name__}: {error}", run_dir=run_dir) from error
    finally:
        # Every sink is closed, whatever happened, so the files on disk say how the run ended.
        for sink in sinks:
            with contextlib.suppress(Exception):
                sink.close(outcome)
    return TrainedRun(run_dir, files.summary.summary if files else {})


def _drive(
    session: Session,
    state: LoopState | None,
    sinks: list[Sink],
    checkpointer: Checkpointer,
    files: RunFiles | None,
) -> None:
    """The loop, its records to the sinks, and a checkpoint at every point to resume from (rank 0's
    CSV writer and summary in `files` say what the files hold)."""
    world = session.world
    with StopRequests().installed() as requests, contextlib.closing(checkpointer):
        # Several processes stop together, at the same step, when any of them is asked to.
        stop = (lambda: agree(world, requests())) if world.active else requests
        # A checkpoint due by time: rank 0's clock decides, for every rank.
        due = (
            (lambda: agree(world, world.is_main and checkpointer.due())) if world.active else checkpointer.due
        )
        for record in run_training(
            session, state, stop, restore_best=checkpointer.restore_best, checkpoint_due=due
        ):
            for sink in sinks:
                sink.handle(record)
            if isinstance(record, CheckpointDue):
                # A point to resume from: the files hold every record before it, and no other. With
                # several processes, every rank has reached it before rank 0 writes it, and none goes
                # on (or is stopped) before it is on disk.
                barrier(world)
                if files:
                    checkpointer.save(record, files.csv.marks, files.summary.state)
                    if world.active:
                        checkpointer.wait()
                barrier(world)


@dataclass(frozen=True)
class RunFiles:
    """The sinks that write rank 0's run files: the CSV writer and the summary (whose sizes and state
    a checkpoint records), and every file sink, TensorBoard's and MLflow's included."""

    csv: CsvWriter
    summary: SummaryWriter
    sinks: list[Sink]


def _open_files(
    spec: RunSpec, run_dir: Path, checkpoint: Checkpoint | None, tracking: Tracking | None = None
) -> RunFiles:
    """config.yaml; the CSV files (cut back to a checkpoint's sizes on resume), the summary (its history
    restored) and TensorBoard's events when asked: the sinks that write the run's files."""
    header = f"# The resolved config of run {spec.name}: every default and filled-in value.\n"
    write_yaml(run_dir / "config.yaml", spec.resolved, header)
    summary = SummaryWriter(run_dir, run_identity(spec), checkpoint["summary"] if checkpoint else None)
    evaluations = spec.train.eval_every is not None
    csv_sizes = checkpoint["csv_sizes"] if checkpoint else None
    rate_columns = tuple(column for column, _ in spec.rate_columns)
    csv = CsvWriter(run_dir, spec.validation_metrics, evaluations, csv_sizes, rate_columns)
    files: list[Sink] = [csv, summary]
    if spec.output.tensorboard:
        from optcli.train.sinks.tensorboard import TensorBoardWriter

        purge_step = checkpoint["loop"]["step"] + 1 if checkpoint else None  # the steps logged again
        files.append(TensorBoardWriter(run_dir, spec, purge_step))
    if spec.output.mlflow is not None:  # (after the summary: it uploads summary.json once written)
        from optcli.train.sinks.mlflow_logging import MlflowLogger

        files.append(
            MlflowLogger(run_dir, spec.resolved, checkpoint is not None, tracking, rate_columns=rate_columns)
        )
    return RunFiles(csv, summary, files)


def _restore(session: Session, resume: ResumePoint, summary: SummaryWriter | None) -> LoopState:
    """The checkpoint's states put into the fresh session; the resume noted in the summary."""
    state = restore_session(session, resume.checkpoint)
    if any(change.startswith("optimizer.") for change in resume.changes):
        apply_optimizer_arguments(session)
    if any(change.startswith("scheduler.") for change in resume.changes):
        apply_scheduler_arguments(session)
    from_epoch = state.epoch if state.batches_done else state.epoch - 1
    if summary is None:  # a rank other than 0: it writes no summary
        return state
    summary.note_resume(
        {
            "at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "from_epoch": from_epoch,
            "from_step": state.step,
            "changes": resume.changes,
            **({"note": resume.note} if resume.note else {}),
        }
    )
    return state
