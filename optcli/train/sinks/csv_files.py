"""metrics.csv, epochs.csv and evals.csv: a row per record, at full precision, flushed every
FLUSH_INTERVAL_S; a resumed run cuts them back to the checkpoint's sizes and logs the rest again.

Each file's SHA-256 is kept as it is written (a row costs a microsecond), and every checkpoint
records it beside the size (CsvMarks): what a resume, a comparison's reports and `mlflow-sync`
check a file against before they trust the rows in it (run_files.py).
"""

from __future__ import annotations

import csv
import hashlib
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from optcli.errors import ConfigError, TrainingFailed
from optcli.train.records import (
    EpochRecord,
    EvalRecord,
    Record,
    StepRecord,
)
from optcli.train.rundir import write_atomically
from optcli.train.sinks import RunOutcome, format_number

METRICS_COLUMNS = ("step", "epoch", "loss", "lr", "grad_norm", "elapsed_s")
# With parameter groups or parts, metrics.csv adds their rates last (RunSpec.rate_columns).
EPOCHS_COLUMNS = ("epoch", "step", "train_loss", "lr", "elapsed_s")
# epochs.csv adds the run's validation metrics (config/metrics.py); evals.csv holds them, between
# step, epoch and elapsed_s.


# How long a logged row may wait in memory before it is handed to the OS. A system call per row
# would cost about 1.5% of a small model's training speed; a process that is killed outright
# (SIGKILL, out of memory) loses at most this much. Python errors and interrupts lose nothing: the
# files are flushed when the run ends, however it ends.
FLUSH_INTERVAL_S = 0.5


@dataclass(frozen=True)
class CsvMarks:
    """Where the CSV files stood when a checkpoint was written: each one's size, and the SHA-256 of
    those bytes."""

    sizes: dict[str, int]
    sha256: dict[str, str]


def prefix_sha256(path: Path, size: int) -> hashlib._Hash:
    """The SHA-256 of a file's first `size` bytes, read a megabyte at a time (to go on from)."""
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        while size > 0 and (chunk := stream.read(min(size, 1 << 20))):
            digest.update(chunk)
            size -= len(chunk)
    return digest


class _Hashed:
    """A text file that keeps the SHA-256 of what is written to it (UTF-8, newlines as written)."""

    def __init__(self, stream: TextIO, digest: hashlib._Hash) -> None:
        self.stream, self.digest = stream, digest

    def write(self, text: str) -> int:
        self.digest.update(text.encode("utf-8"))
        return self.stream.write(text)


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
        self._files = {name: hashed.stream for name, hashed in opened.items()}
        self._digests = {name: hashed.digest for name, hashed in opened.items()}
        self._metrics, self._epochs = csv.writer(opened["metrics.csv"]), csv.writer(opened["epochs.csv"])
        self._evals = csv.writer(opened["evals.csv"]) if evaluations else None
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

    def marks(self) -> CsvMarks:
        """Every file's size and SHA-256 once flushed: where a resumed run cuts them back to, and what
        their bytes up to there must be."""
        self.flush()
        return CsvMarks(
            {name: stream.tell() for name, stream in self._files.items()},
            {name: digest.hexdigest() for name, digest in self._digests.items()},
        )

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


def _open_csv(path: Path, columns: tuple[str, ...], resume_sizes: dict[str, int] | None) -> _Hashed:
    if resume_sizes is not None and path.name in resume_sizes and path.exists():
        # Rows logged after the checkpoint are dropped: the resumed run logs them again, exactly.
        # (Never through a link, and never longer: truncate() would pad with NUL bytes. The resume
        # refused both before it started; this keeps the promise whoever calls it.)
        size = resume_sizes[path.name]
        if path.is_symlink() or path.stat().st_size < size:
            raise ConfigError(f"{path}: not the file the checkpoint recorded ({size} bytes); not resumed")
        digest = prefix_sha256(path, size)
        with path.open("r+b") as raw:
            raw.truncate(size)
        return _Hashed(path.open("a", newline="", encoding="utf-8"), digest)
    hashed = _Hashed(path.open("w", newline="", encoding="utf-8"), hashlib.sha256())
    csv.writer(hashed).writerow(columns)
    hashed.stream.flush()
    return hashed
