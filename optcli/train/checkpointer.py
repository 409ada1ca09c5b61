"""When checkpoints are written, and what goes in them.

`checkpoints/last.pt` is written when a checkpoint is due by time (`train.checkpoint_interval`: by
default often enough to lose little, rarely enough to cost under about 1% of the run, at an epoch's
end or within one), or every `train.checkpoint_every` epochs when the config counts epochs instead;
and always when a run is interrupted and when it ends. `checkpoints/best.pt` is written whenever the
monitored metric (train.monitor: the validation loss when there is validation data, else the epoch's
training loss) is the best so far: it must hold that epoch's weights, which no later write could.
"""

from __future__ import annotations

import array
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import numpy
import torch

from optcli.components.optimizers import has_modes, set_optimizer_mode
from optcli.config.metrics import default_monitor
from optcli.config.schema import interval_seconds
from optcli.train.checkpoint_writer import ASYNC_LIMIT, CheckpointWriter, state_bytes
from optcli.train.checkpoints import FORMAT, Checkpoint, data_json, load_checkpoint, text_sha256
from optcli.train.records import CheckpointDue
from optcli.train.rundir import remove_partial_writes
from optcli.train.session import Session
from optcli.train.sinks.csv_files import CsvMarks
from optcli.train.sinks.summary import SummaryState


def capture_random_state(session: Session) -> dict[str, Any]:
    """Every generator a run draws from. Plain lists and tensors only: loadable with weights_only."""
    numpy_state: Any = numpy.random.get_state()
    version, internal, gauss_next = random.getstate()
    state: dict[str, Any] = {
        # Python's 625 words as one tensor: pickled as 625 ints they were most of a checkpoint's cost
        # (and through an array, a third of torch.tensor's time: this runs at every best epoch).
        "python": [version, torch.frombuffer(array.array("q", internal), dtype=torch.int64), gauss_next],
        "numpy": [numpy_state[0], torch.from_numpy(numpy_state[1].copy()), *numpy_state[2:]],
        "torch": torch.get_rng_state(),
        "data_order": session.batches.generator.get_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


class CheckpointTimer:
    """When a periodic checkpoint is due by time. With a fixed interval: that long after the last.
    With "auto" (`interval_s` None): 100 times what the last one cost the loop (so checkpointing
    takes about 1% of the run's time, whatever its epochs' length), and at most AUTO_MOST_S apart;
    the first at the first epoch's end (its cost is not known before), or within the first epoch
    once AUTO_MOST_S have passed."""

    AUTO_SHARE = 0.01
    AUTO_MOST_S = 600.0  # a run killed at any moment loses at most this much (plus a checkpoint's cost)

    def __init__(self, interval_s: float | None) -> None:
        self.interval_s = interval_s
        self.last = time.perf_counter()
        self.cost_s: float | None = None  # what the last checkpoint cost the loop

    def due(self) -> bool:
        if self.interval_s is not None:
            wait = self.interval_s
        elif self.cost_s is None:
            wait = self.AUTO_MOST_S
        else:
            wait = min(self.AUTO_MOST_S, self.cost_s / self.AUTO_SHARE)
        return time.perf_counter() - self.last >= wait

    def due_at_epoch_end(self) -> bool:
        return (self.interval_s is None and self.cost_s is None) or self.due()

    def written(self, cost_s: float) -> None:
        self.last, self.cost_s = time.perf_counter(), cost_s


class Checkpointer:
    """Writes last.pt and best.pt at the points to resume from that the loop yields. The run calls it
    after the sinks have seen every record before that point; it is a step of the run, not a sink."""

    def __init__(self, run_dir: Path, session: Session) -> None:
        self.directory = run_dir / "checkpoints"
        self.session = session
        train = session.spec.train
        self.enabled = train.checkpoint  # false: nothing is ever written
        self.every = train.checkpoint_every  # None: by time (self.timer)
        self.timer = CheckpointTimer(interval_seconds(train.checkpoint_interval))
        self.monitor = train.monitor or default_monitor(session.spec.data.has_validation)
        self.last_written: str | None = None  # "epoch 3, step 60", for messages: once it is on disk
        self.writer = CheckpointWriter()
        self._writing: str | None = None  # what the writer has in hand
        self._pending_best: Checkpoint | None = None  # the best point since the last write
        self._small_state: bool | None = None  # whether a best point is kept in memory (_fits_in_memory)
        # data.json's hash, which every checkpoint vouches for: the run's data.json never changes, and
        # a held-out split's rows make it long (hashed once, not at every epoch's end).
        self._data_sha256 = text_sha256(data_json(session.data_description))
        if session.world.is_main:
            remove_partial_writes(self.directory)

    def save(self, point: CheckpointDue, csv: Callable[[], CsvMarks], summary: SummaryState) -> None:
        """last.pt when a checkpoint is due here (`_due`), best.pt when the monitored metric improved.
        `csv` gives the CSV files' marks (it flushes them: asked only when a checkpoint is made)."""
        if not self.enabled:
            return
        due = self._due(point)
        is_best = self.monitor in point.improved
        if not (due or is_best):
            return
        started = time.perf_counter()
        payload = self._payload(point, csv(), summary)
        if is_best and not due and self.every is None and self._fits_in_memory(payload):
            # Priced by time too: the best point is kept (a copy, in memory) and written with the next
            # checkpoint, so that best.pt on disk is always the best as of last.pt. Only what training
            # goes on changing is copied (the weights, the optimizer's and scheduler's states, the
            # summary): the rest `_payload` made afresh, and the config is the run's, never changed.
            snapshot = {key: value if key in MADE_FRESH else frozen(value) for key, value in payload.items()}
            self._pending_best = cast(Checkpoint, snapshot)
            return
        if due and not is_best:
            self._write_pending_best()  # (then this point's last.pt; a newer best replaces it below)
        self._pending_best = None
        self.wait()
        last = self.directory / "last.pt" if due else None
        self.writer.write(payload, last, self.directory / "best.pt" if is_best else None)
        self._writing = f"epoch {point.epoch}, step {point.step}" if due else None
        if due:  # what this checkpoint cost the loop prices the next (train.checkpoint_interval: auto)
            self.timer.written(time.perf_counter() - started)
            self._small_state = None

    def _fits_in_memory(self, payload: Checkpoint) -> bool:
        """Whether a best point this size is kept in memory until the next checkpoint (ASYNC_LIMIT).
        Measured at the first best point after each write of last.pt: a run's states keep their sizes
        once its optimizer has stepped, or grow slowly (L-BFGS's history), and walking the payload at
        every best epoch cost a tenth of a small model's step."""
        if self._small_state is None:
            self._small_state = state_bytes(payload) <= ASYNC_LIMIT
        return self._small_state

    def _write_pending_best(self) -> None:
        if self._pending_best is not None:
            self.wait()
            self.writer.write(self._pending_best, None, self.directory / "best.pt")
            self._pending_best = None

    def _due(self, point: CheckpointDue) -> bool:
        """Whether last.pt is written at this point to resume from."""
        if point.reason in ("interrupted", "partial"):
            return True  # (a point no later checkpoint would cover)
        if self.every is not None:  # by epochs, as the config counts them
            return point.reason in ("epoch", "final") and self.every > 0 and point.epoch % self.every == 0
        return point.reason in ("final", "interval") or self.timer.due_at_epoch_end()

    def due(self) -> bool:
        """Whether a checkpoint is due by time within an epoch (asked by the loop)."""
        return self.enabled and self.every is None and self.timer.due()

    def wait(self) -> None:
        """Every checkpoint handed to the writer is on disk (or its error raised)."""
        self.writer.wait()
        if self._writing is not None:
            self.last_written, self._writing = self._writing, None

    def close(self) -> None:
        # (A best point still pending is dropped: the run failed before its next checkpoint, and
        # best.pt on disk stays the best as of last.pt, which a resume goes on from.)
        try:
            self.wait()
        finally:
            self.writer.close()

    def restore_best(self) -> int | None:
        """The best checkpoint's weights put into the model; its epoch, or None when there is none.
        They are the weights that were scored (an optimizer's eval mode is already applied)."""
        self._write_pending_best()
        self.wait()
        path = self.directory / "best.pt"
        if not path.is_file():
            return None
        best = load_checkpoint(path)
        self.session.model.load_state_dict(dict(best["model"]))
        return int(best["loop"]["epoch"]) - 1  # written at an epoch's end, when the next is due

    def _payload(self, point: CheckpointDue, csv: CsvMarks, summary: SummaryState) -> Checkpoint:
        session = self.session
        # Where the data order stands: mid-epoch, the state that drew this epoch's order (it is drawn
        # again and the batches done are skipped); at an epoch's end, the state that draws the next.
        mid_epoch = point.state["batches_done"] > 0
        scored, training = model_weights(session)
        checkpoint = Checkpoint(
            format=FORMAT,
            model=scored,
            optimizer=session.optimizer.state_dict(),
            scheduler=session.scheduler.state_dict() if session.scheduler is not None else None,
            random=capture_random_state(session),
            data_order=session.batches.epoch_order_state
            if mid_epoch
            else session.batches.generator.get_state(),
            loop=point.state,
            config=session.spec.resolved,
            csv_sizes=csv.sizes,
            csv_sha256=csv.sha256,
            summary=summary,
            filled=list(session.spec.scheduler.filled) if session.spec.scheduler else [],
            data_sha256=self._data_sha256,
            threads=torch.get_num_threads(),
        )
        if training is not None:
            checkpoint["training_model"] = training
        if session.scaler is not None:
            checkpoint["scaler"] = session.scaler.state_dict()
        return checkpoint


# The parts of a checkpoint's payload that `_payload` makes afresh each time (or that never change):
# no later step can change them, so a best point kept in memory shares them.
MADE_FRESH = frozenset(
    {"format", "random", "loop", "csv_sizes", "csv_sha256", "filled", "data_sha256", "threads", "config"}
)


def frozen(value: Any) -> Any:
    """A copy of a checkpoint's payload that training cannot change: every tensor cloned, every
    container copied (numbers and strings are immutable already)."""
    if isinstance(value, torch.Tensor):
        return value.detach().clone()
    if isinstance(value, dict):
        return {key: frozen(item) for key, item in value.items()}
    if isinstance(value, list):
        return [frozen(item) for item in value]
    if isinstance(value, tuple):
        return tuple(frozen(item) for item in value)
    return value


def model_weights(session: Session) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """The weights every metric was computed with, and (for an optimizer with a train and an eval mode,
    such as schedule-free's) the training-mode weights a resume continues from, else None."""
    if not has_modes(session.optimizer):
        return session.model.state_dict(), None
    training = {key: value.clone() for key, value in session.model.state_dict().items()}
    set_optimizer_mode(session.optimizer, "eval")
    scored = {key: value.clone() for key, value in session.model.state_dict().items()}
    set_optimizer_mode(session.optimizer, "train")
    # train() after eval() undoes it only up to rounding: the training weights go back bit for bit.
    session.model.load_state_dict(training)
    return scored, training
