"""`optcli evaluate`: a checkpoint's metrics on the run's own validation or test data, or on new data,
by the code the run evaluated with (train/evaluation.py) on the data its session builds: on the
run's own split it equals what the run reported, to the last digit."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

import torch

from optcli.errors import ConfigError, ExportFailed
from optcli.metrics.measure import Measured
from optcli.train.evaluation import evaluate_split
from optcli.train.session import Session, build_session
from optcli.use.trained import TrainedRun

Split = Literal["val", "test"]


def new_data_overrides(data: Path) -> list[str]:
    """The run's config with `data` as its test data (the training data's other arguments kept: its
    target column, delimiter, normalization), so that its class names and statistics are the run's."""
    return [f"data.test={json.dumps({'path': str(data.resolve())})}", "data.test_fraction=null"]


def scored_session(trained: TrainedRun) -> Session:
    """The run's session (its data split, normalized and batched as the run's were) holding the
    checkpoint's scored weights."""
    session = build_session(trained.spec)
    session.model.load_state_dict(dict(trained.checkpoint["model"]))
    return session


def evaluate_checkpoint(trained: TrainedRun, split: Split, session: Session | None = None) -> Measured:
    session = session or scored_session(trained)
    batches = session.val_batches if split == "val" else session.test_batches
    if batches is None:
        raise ConfigError(
            f"--split {split}: the run has no {'validation' if split == 'val' else 'test'} data; give DATA to "
            "evaluate on new data"
        )
    return evaluate_split(session, batches)


def first_inputs(session: Session) -> torch.Tensor:
    """A real batch of the run's inputs, preprocessed: its validation data's first, else its
    training data's."""
    batches = session.val_batches or session.test_batches or session.batches
    batch = next(iter(batches.epoch()))
    if isinstance(batch, dict) or not isinstance(batch[0], torch.Tensor):
        raise ExportFailed(
            "the run's batches are mappings (a model called with keyword arguments): export takes a model "
            "called with one tensor of inputs"
        )
    return batch[0].to("cpu")


def evaluation_record(trained: TrainedRun, data: str, measured: Measured) -> dict[str, Any]:
    """What `--out` holds: which weights judged which data, the metrics, and the tables (a confusion
    matrix: a row per true class)."""
    return {
        "run": str(trained.run_dir),
        "checkpoint": trained.checkpoint_name,
        "epoch": trained.epoch,
        "step": trained.step,
        "data": data,
        "metrics": measured.values,
        **({"tables": measured.tables} if measured.tables else {}),
        "config_hash": trained.summary.get("config_hash"),
    }
