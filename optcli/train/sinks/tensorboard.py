"""A sink writing TensorBoard event files (`output.tensorboard: true`).

`<run>/tensorboard/` gets every logged step's loss, learning rate and gradient norm, each epoch's and
evaluation's metrics, the resolved config as text, and the hyperparameters with the final metrics
(TensorBoard's HPARAMS tab). A comparison's runs each write their own, so `tensorboard --logdir
<comparison>` shows every arm side by side. tensorboard is an optional extra: `check` says when it is
missing.

The event file is written here, in batches, with tensorboard's protobufs in its record format (a
length and a masked CRC-32C around each event), rather than through torch's SummaryWriter: its
background writer takes a lock per event and computes CRCs in pure Python, which cost a small model a
fifth of its speed; batches every half second with google-crc32c's C CRC cost it about 2%.
"""

from __future__ import annotations

import math
import os
import socket
import struct
import time
from pathlib import Path
from typing import Any

import yaml

from optcli.config.spec import RunSpec
from optcli.train.records import EpochRecord, EvalRecord, Record, RunFinished, StepRecord
from optcli.train.sinks import RunOutcome
from optcli.train.sinks.csv_files import FLUSH_INTERVAL_S


class TensorBoardWriter:
    def __init__(self, run_dir: Path, spec: RunSpec, purge_step: int | None = None) -> None:
        """`purge_step`: a resumed run logs the steps from there again; TensorBoard drops what an
        earlier file holds of them (a session restart, as SummaryWriter's purge_step writes it)."""
        from tensorboard.compat.proto.event_pb2 import Event, SessionLog
        from tensorboard.compat.proto.summary_pb2 import Summary
        from torch.utils.tensorboard.summary import text

        self.event_type, self.summary_type = Event, Summary
        directory = run_dir / "tensorboard"
        directory.mkdir(exist_ok=True)
        name = f"events.out.tfevents.{int(time.time())}.{socket.gethostname()}.{os.getpid()}.optcli"
        self.stream = (directory / name).open("ab")
        self.started = time.time()
        self.spec = spec
        self.rate_columns = tuple(column for column, _ in spec.rate_columns)
        self._event(Event(wall_time=self.started, file_version="brain.Event:2"))
        if purge_step is not None:
            restart = SessionLog(status=SessionLog.START)
            self._event(Event(wall_time=self.started, step=purge_step, session_log=restart))
        else:  # (a resumed run's config is the first file's, or says so in summary.json)
            resolved = yaml.safe_dump(spec.resolved, sort_keys=False)
            self._event(
                Event(wall_time=self.started, step=0, summary=text("config", "```\n" + resolved + "```"))
            )
        self.pending: list[StepRecord] = []
        self.next_flush = time.perf_counter() + FLUSH_INTERVAL_S
        self.finals: dict[str, float] = {}

    def handle(self, record: Record) -> None:
        if type(record) is StepRecord:  # (the common case: kept, and written in a batch)
            self.pending.append(record)
            if time.perf_counter() >= self.next_flush:
                self.flush()
            return
        self.flush()  # step events first, in step order
        if isinstance(record, EpochRecord):
            self._scalars(
                {f"epoch/{name}": value for name, value in record.metrics.items()} | {"epoch/lr": record.lr},
                record.step,
                record.elapsed_s,
            )
            self.finals.update({f"final/{name}": value for name, value in record.metrics.items()})
        elif isinstance(record, EvalRecord):
            values = {f"{record.split}/{name}": value for name, value in record.metrics.items()}
            self._scalars(values, record.step, record.elapsed_s)
            if record.split == "test":
                self.finals.update(
                    {f"final/test_{key.split('/')[1]}": value for key, value in values.items()}
                )
        elif isinstance(record, RunFinished):
            self.finals["final/steps"] = float(record.steps)

    def flush(self) -> None:
        for step in self.pending:
            values = {"train/loss": step.loss, "train/lr": step.lr}
            rates = zip(self.rate_columns, step.group_lrs, strict=True)
            values.update({f"train/{column}": rate for column, rate in rates})
            if step.grad_norm is not None:
                values["train/grad_norm"] = step.grad_norm
            self._scalars(values, step.step, step.elapsed_s)
        self.pending.clear()
        self.stream.flush()
        self.next_flush = time.perf_counter() + FLUSH_INTERVAL_S

    def _scalars(self, values: dict[str, float], step: int, elapsed_s: float) -> None:
        Value = self.summary_type.Value
        summary = self.summary_type(
            value=[Value(tag=tag, simple_value=value) for tag, value in values.items()]
        )
        self._event(self.event_type(wall_time=self.started + elapsed_s, step=step, summary=summary))

    def _event(self, event: Any) -> None:
        data = event.SerializeToString()
        header = struct.pack("<Q", len(data))
        self.stream.write(header + _masked_crc(header) + data + _masked_crc(data))

    def close(self, outcome: RunOutcome) -> None:
        from torch.utils.tensorboard.summary import hparams

        self.flush()
        metrics = {key: value for key, value in self.finals.items() if math.isfinite(value)}
        if metrics:
            for summary in hparams(_hyperparameters(self.spec.resolved), metrics):
                self._event(self.event_type(wall_time=time.time(), summary=summary))
            steps = int(self.finals.get("final/steps", 0))
            self._scalars(metrics, steps, time.time() - self.started)
        self.stream.close()


def _masked_crc(data: bytes) -> bytes:
    """TFRecord's masked CRC-32C of `data`, little-endian, as TensorBoard checks it."""
    import google_crc32c

    crc = google_crc32c.value(data)
    return struct.pack("<I", (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF)


def _hyperparameters(resolved: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """The resolved config's plain values, flattened to `optimizer.lr`, `scheduler.gamma`, ...;
    lists as text (TensorBoard takes numbers, text and booleans)."""
    flat: dict[str, Any] = {}
    for key, value in resolved.items():
        if key in ("output", "name"):
            continue
        if isinstance(value, dict):
            flat.update(_hyperparameters(value, f"{prefix}{key}."))
        elif isinstance(value, bool | int | float | str):
            flat[f"{prefix}{key}"] = value
        elif value is not None:
            flat[f"{prefix}{key}"] = str(value)
    return flat
