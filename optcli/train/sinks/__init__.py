"""The sinks: what turns the loop's records into something a person or a program reads. A sink sees
every record in order (`handle`) and is told how the run ended (`close`); sinks never reach back into
the loop.

- csv_files.py: metrics.csv, epochs.csv and evals.csv;
- summary.py: summary.json;
- display.py: the live table (or plain lines) in the terminal;
- tensorboard.py: TensorBoard's event file;
- mlflow_logging.py, and the process it may send to (mlflow_sender.py): an MLflow run.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

from optcli.train.records import Record


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
