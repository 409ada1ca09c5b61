"""A sink logging a run to MLflow (`output.mlflow`): one MLflow run per optcli run.

Parameters: the resolved config flattened to dotted keys (what config.yaml records), the seed, the
initial weights' and the data's hashes. Metrics, with the optimizer step as MLflow's step: every
logged step's `loss`, `lr`, `grad_norm` and, with optimizer.param_groups, every other group's rate
(`lr_group1`, ...: the columns of metrics.csv); every epoch's `train_loss` and validation metrics, and
every evaluation's (`val_loss`, `val_accuracy`, ...: the columns of epochs.csv and evals.csv); the
test data's `test_*`; at the end `final_*` and `best_*` from summary.json. Tags: optcli's version,
the git commit of the working directory's repository, the device, and the status (FINISHED, FAILED,
KILLED). Artifacts: config.yaml, summary.json and the run's figures.

The loop never waits for the tracking server: records are batched here (every half second) and
handed, as JSON lines through a pipe, to a process of its own that owns the client (mlflow_sender.py).
A server that cannot be reached, or fails, is warned about once; the run goes on, its files stay the
record, and `optcli mlflow-sync RUN_DIR` uploads it later. `<run>/mlflow.json` keeps the MLflow run's id and the last step it holds, so that a
resumed run continues the same MLflow run and does not log a step twice.
"""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from optcli.errors import ConfigError
from optcli.train.records import EpochRecord, EvalRecord, Record, RunStarted, StepRecord
from optcli.train.rundir import read_csv_rows
from optcli.train.sinks import RunOutcome
from optcli.train.sinks.csv_files import FLUSH_INTERVAL_S
from optcli.train.sinks.mlflow_sender import STATE_FILE, Sender, read_json

STATUS = {"completed": "FINISHED", "failed": "FAILED", "interrupted": "KILLED"}
CLOSE_WAIT_S = 30.0  # how long a finished run waits for the last batches before it leaves them


@dataclass(frozen=True)
class Tracking:
    """A comparison's part in a run's MLflow run: its parent run, and the tags that place it."""

    parent_run_id: str | None = None
    tags: dict[str, str] = field(default_factory=dict)
    experiment: str | None = None  # the parent's: every child in the comparison's experiment


def read_state(run_dir: Path) -> dict[str, Any]:
    return read_json(run_dir / STATE_FILE)


def flat_params(values: Any, prefix: str = "") -> dict[str, str]:
    """The resolved config as MLflow parameters: `optimizer.lr`, `scheduler.name`, ... (as text)."""
    flat: dict[str, str] = {}
    if isinstance(values, dict):
        for key, value in values.items():
            flat.update(flat_params(value, f"{prefix}{key}."))
    elif values is not None:
        flat[prefix.rstrip(".")] = str(values)[:6000]  # (MLflow's limit on a parameter's value)
    return flat


class MlflowLogger:
    """`resolved`: the run's config as config.yaml records it (the live run's, or a finished run's
    read back by `optcli mlflow-sync`, which sends from this process: `in_process`); `tracking_uri`
    overrides its output.mlflow's."""

    def __init__(
        self,
        run_dir: Path,
        resolved: dict[str, Any],
        resumed: bool,
        tracking: Tracking | None = None,
        tracking_uri: str | None = None,
        in_process: bool = False,
        rate_columns: tuple[str, ...] = (),
    ) -> None:
        settings = (resolved.get("output") or {}).get("mlflow") or {}
        tracking = tracking or Tracking()
        self.resolved = resolved
        self.rate_columns = rate_columns  # the names of StepRecord.group_lrs (RunSpec.rate_columns)
        self.uri = resolve_tracking_uri(tracking_uri, settings)
        self.every = settings.get("log_every") or resolved.get("train", {}).get("log_every") or 1
        state = read_state(run_dir) if resumed else {}
        run_id = state.get("run_id") if state.get("tracking_uri") == self.uri else None
        self.continued = run_id is not None  # a resumed run's MLflow run, its parameters logged
        # What MLflow holds already: a resumed run's steps up to there were logged before it stopped.
        self.skip_through = int(state.get("logged_step", 0)) if self.continued else 0
        arguments: dict[str, Any] = {
            "run_dir": str(run_dir),
            "uri": self.uri,
            "experiment": tracking.experiment or settings.get("experiment") or str(resolved.get("name")),
            "run_name": settings.get("run_name") or run_dir.name,
            "device": str(resolved.get("device")),
            "tags": tracking.tags,
            "parent_run_id": tracking.parent_run_id,
            "run_id": run_id,
            "logged_step": self.skip_through,
        }
        self.metrics: list[tuple[str, float, int, int]] = []  # key, value, step, timestamp (ms)
        self.started = time.time()
        self.next_flush = time.perf_counter() + FLUSH_INTERVAL_S
        self.sender = Sender(**arguments) if in_process else None
        self.pipe = None if in_process else _Pipe(arguments)

    # The loop's side: batching, never waiting.

    def handle(self, record: Record) -> None:
        if type(record) is StepRecord:
            if record.step > self.skip_through and record.step % self.every == 0:
                stamp = int((self.started + record.elapsed_s) * 1000)
                self.metrics += [
                    ("loss", record.loss, record.step, stamp),
                    ("lr", record.lr, record.step, stamp),
                ]
                if record.grad_norm is not None:
                    self.metrics.append(("grad_norm", record.grad_norm, record.step, stamp))
                self.metrics += [
                    (column, rate, record.step, stamp)
                    for column, rate in zip(self.rate_columns, record.group_lrs, strict=True)
                ]
            if time.perf_counter() >= self.next_flush:
                self._flush()
            return
        if isinstance(record, RunStarted) and not self.continued:
            params = flat_params({key: value for key, value in self.resolved.items() if key != "output"})
            params.update({"init_hash": record.init_hash, "data_hash": record.data_hash})
            self._send({"kind": "params", "params": params})
        elif isinstance(record, EpochRecord) and record.step > self.skip_through:
            self._values(record.metrics, record.step, record.elapsed_s)
        elif isinstance(record, EvalRecord) and (record.split == "test" or record.step > self.skip_through):
            named = {f"{record.split}_{name}": value for name, value in record.metrics.items()}
            self._values(named, record.step, record.elapsed_s)
        self._flush()

    def _values(self, values: dict[str, float], step: int, elapsed_s: float) -> None:
        stamp = int((self.started + elapsed_s) * 1000)
        self.metrics += [(name, float(value), step, stamp) for name, value in values.items()]

    def _flush(self) -> None:
        if self.metrics:
            self._send({"kind": "metrics", "metrics": self.metrics})
            self.metrics = []
        self.next_flush = time.perf_counter() + FLUSH_INTERVAL_S

    def _send(self, item: dict[str, Any]) -> None:
        if self.sender is not None:
            self.sender.send(item)
        elif self.pipe is not None:
            self.pipe.put(item)

    def close(self, outcome: RunOutcome) -> None:
        self._flush()
        self._send({"kind": "finish", "status": STATUS[outcome.status]})
        if self.pipe is not None:
            self.pipe.close(CLOSE_WAIT_S)

    @property
    def failure(self) -> str | None:
        """(In process, after close) why the upload failed, or None."""
        return self.sender.failure if self.sender is not None else None

    @property
    def run_id(self) -> str | None:
        return self.sender.run_id if self.sender is not None else None


class _Pipe:
    """The sending process, fed by a thread of this one: the loop only puts a batch in a queue."""

    def __init__(self, arguments: dict[str, Any]) -> None:
        # (A session of its own: a terminal's Ctrl-C or a launcher's signal to the run's group stops the
        # run, which then sends its status and closes the pipe; the sender ends after it.)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "optcli.train.sinks.mlflow_sender"],
            stdin=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        self.items: queue.SimpleQueue[dict[str, Any] | None] = queue.SimpleQueue()
        self.items.put(arguments)
        self.thread = threading.Thread(target=self._forward, name="optcli-mlflow", daemon=True)
        self.thread.start()

    def put(self, item: dict[str, Any]) -> None:
        self.items.put(item)

    def _forward(self) -> None:
        stream: IO[str] | None = self.process.stdin
        assert stream is not None
        try:
            while (item := self.items.get()) is not None:
                stream.write(json.dumps(item) + "\n")
                stream.flush()
        except OSError:
            pass  # the sender is gone: it said why
        finally:
            stream.close()

    def close(self, wait_s: float) -> None:
        self.items.put(None)
        deadline = time.monotonic() + wait_s
        self.thread.join(wait_s)
        try:
            self.process.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            self.process.kill()
            print(
                f"warning: MLflow did not take the run's last values within {wait_s:.0f} s; its files are the "
                "record: optcli mlflow-sync uploads them",
                file=sys.stderr,
            )


def resolve_tracking_uri(given: str | None, settings: dict[str, Any]) -> str | None:
    """Where runs are logged: `--tracking-uri`, else output.mlflow's, else MLFLOW_TRACKING_URI."""
    return given or settings.get("tracking_uri") or os.environ.get("MLFLOW_TRACKING_URI")


ParsedRows = list[list[tuple[tuple[str, ...] | None, Record]]]


def read_rows(run_dir: Path) -> ParsedRows:
    """A finished run's CSV files as the records its live run gave: every logged step (metrics.csv),
    evaluation (evals.csv) and epoch (epochs.csv). A file that is not a run's is a ConfigError naming
    it and its row, before anything is sent anywhere."""
    return [_rows_of(run_dir / name, parse) for name, parse in _PARSERS]


def replay(run_dir: Path, logger: MlflowLogger, rows: ParsedRows) -> None:
    """A finished run, fed to `logger` as the live run fed it: its start, its CSV files' `rows`
    (read_rows), the test data's metrics and how it ended (summary.json). What `optcli mlflow-sync`
    uploads."""
    summary = read_json(run_dir / "summary.json")
    logger.handle(RunStarted(0, 0, 0, 0, str(summary.get("init_hash")), str(summary.get("data_hash"))))
    for records in rows:
        for rates, record in records:
            if rates is not None:  # (the rates beside `lr` that a metrics.csv row holds)
                logger.rate_columns = rates
            logger.handle(record)
    tested = {
        key.removeprefix("test_"): float(value)
        for key, value in summary.items()
        if key.startswith("test_")
        and key != "test_weights_epoch"
        and isinstance(value, int | float)
        and not isinstance(value, bool)
    }
    if tested:
        steps = int(summary.get("steps") or 0)
        logger.handle(
            EvalRecord(
                "test",
                steps,
                int(summary.get("epochs") or 0),
                tested,
                float(summary.get("train_time_s") or 0),
            )
        )
    ended = {"completed": "completed", "failed": "failed"}.get(str(summary.get("status")), "interrupted")
    logger.close(RunOutcome(ended, summary.get("error")))  # type: ignore[arg-type]


_FIXED = ("step", "epoch", "elapsed_s", "lr")


def _step_row(row: dict[str, str]) -> tuple[tuple[str, ...] | None, Record]:
    norm = float(row["grad_norm"]) if row.get("grad_norm") else None
    rates = tuple(key for key in row if key.startswith("lr_") and row[key])  # lr_group1, lr_muon, ...
    group_lrs = tuple(float(row[key]) for key in rates)
    step = StepRecord(
        int(row["step"]),
        int(row["epoch"]),
        float(row["loss"]),
        float(row["lr"]),
        norm,
        float(row["elapsed_s"]),
        group_lrs,
    )
    return rates, step


def _eval_row(row: dict[str, str]) -> tuple[tuple[str, ...] | None, Record]:
    metrics = {
        key.removeprefix("val_"): float(value) for key, value in row.items() if key not in _FIXED and value
    }
    return None, EvalRecord("val", int(row["step"]), int(row["epoch"]), metrics, float(row["elapsed_s"]))


def _epoch_row(row: dict[str, str]) -> tuple[tuple[str, ...] | None, Record]:
    metrics = {key: float(value) for key, value in row.items() if key not in _FIXED and value}
    epoch = EpochRecord(
        int(row["epoch"]), int(row["step"]), float(row["lr"]), float(row["elapsed_s"]), metrics
    )
    return None, epoch


_PARSERS = (("metrics.csv", _step_row), ("evals.csv", _eval_row), ("epochs.csv", _epoch_row))


def _rows_of(
    path: Path, parse: Callable[[dict[str, str]], tuple[tuple[str, ...] | None, Record]]
) -> list[tuple[tuple[str, ...] | None, Record]]:
    """A run's CSV file as records; a ConfigError naming the file and row where it is not a run's."""
    parsed = []
    for number, row in enumerate(read_csv_rows(path), start=2):  # (row 1: the header)
        try:
            parsed.append(parse(row))
        except (KeyError, ValueError, TypeError) as error:
            raise ConfigError(
                f"{path}: row {number} is not a row optcli wrote ({type(error).__name__}: {error}); "
                "restore the file, or leave the run out"
            ) from None
    return parsed
