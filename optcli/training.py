"""One training run from a validated RunSpec: its directory, its live objects, its records and sinks."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from optcli.errors import TrainingFailed
from optcli.loop import run_training
from optcli.rundir import create_run_dir, write_atomically, write_yaml
from optcli.session import build_session
from optcli.sinks import CsvWriter, RunOutcome, Sink, SummaryWriter
from optcli.spec import RunSpec


@dataclass(frozen=True)
class RunResult:
    run_dir: Path
    summary: dict[str, Any]


def run_identity(spec: RunSpec) -> dict[str, Any]:
    """What summary.json says about the run before it starts."""
    return {
        "name": spec.name,
        "seed": spec.seed,
        "device": spec.device,
        "config_hash": spec.config_hash,
        "planned_steps": spec.total_steps,
        "planned_epochs": spec.epochs,
    }


def train(spec: RunSpec, displays: Sequence[Sink] = (), run_dir: Path | None = None) -> RunResult:
    """Train one run into a new run directory; raise TrainingFailed (after writing summary.json) if it fails.

    `run_dir` is created when not given: `<output.dir>/<name>/<timestamp>/`.
    """
    if run_dir is None:
        run_dir = create_run_dir(Path(spec.output.dir), spec.name)
    header = f"# The resolved config of run {spec.name}: every default and filled-in value.\n"
    write_yaml(run_dir / "config.yaml", spec.resolved, header)
    summary = SummaryWriter(run_dir, run_identity(spec))
    csv_writer = CsvWriter(run_dir, spec.data.has_validation, spec.train.eval_every is not None)
    sinks: list[Sink] = [csv_writer, summary, *displays]
    outcome = RunOutcome("failed", "training did not start")
    try:
        session = build_session(spec)
        # What the model sees of the data: sizes, class names, normalization statistics.
        write_atomically(run_dir / "data.json", json.dumps(session.data_description, indent=2) + "\n")
        for record in run_training(session):
            for sink in sinks:
                sink.handle(record)
        outcome = RunOutcome("completed")
    except TrainingFailed as error:
        outcome = RunOutcome("failed", str(error))
        error.run_dir = run_dir
        raise
    except KeyboardInterrupt:
        outcome = RunOutcome("interrupted", "interrupted by the user")
        raise
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
