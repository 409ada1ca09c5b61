"""Checkpoint files written beside the training: the loop serializes a checkpoint (its state at that
moment, so training may go on changing it) and goes on, while a thread writes, syncs and renames the
bytes into place. Per epoch of a small model that is most of a millisecond of waiting on the disk.

A large checkpoint (a model and optimizer state over ASYNC_LIMIT bytes) is written as before,
straight into its file from the loop's thread, so that no second copy of a large model's state sits
in memory. One write is in flight at a time: each waits for the one before, so files land in order.
`wait()` returns once every checkpoint handed over is on disk, and raises the error a write met (a
full disk, say), as writing in the loop's thread would have, only later.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, BinaryIO

import torch

from optcli.train.rundir import replace_atomically

ASYNC_LIMIT = 64 * 2**20


class CheckpointWriter:
    def __init__(self) -> None:
        self._thread: ThreadPoolExecutor | None = None  # started at the first checkpoint
        self._pending: Future[None] | None = None

    def write(self, payload: Any, last: Path | None, best: Path | None) -> None:
        """A checkpoint to `last` and to `best` (two files of the same bytes when both are given)."""
        self.wait()
        # The whole payload is sized, never a part of it by name: an optimizer's or scheduler's state
        # dict is opaque (a wrapper such as Lookahead nests its own layout).
        if state_bytes(payload) > ASYNC_LIMIT:
            write_files(lambda stream: torch.save(payload, stream), last, best)
            return
        buffer = io.BytesIO()
        torch.save(payload, buffer)
        serialized = buffer.getbuffer()
        if self._thread is None:
            self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="optcli-checkpoints")
        self._pending = self._thread.submit(write_files, lambda stream: stream.write(serialized), last, best)

    def wait(self) -> None:
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.result()

    def close(self) -> None:
        """Wait for the writes (raising their error), and end the thread."""
        try:
            self.wait()
        finally:
            if self._thread is not None:
                self._thread.shutdown()
                self._thread = None


def write_files(write: Callable[[BinaryIO], object], last: Path | None, best: Path | None) -> None:
    """Each file atomically: a crash while writing leaves the previous checkpoint intact. best.pt is a
    file of its own, never a link to last.pt: damage to one leaves the other to fall back on."""
    for path in (last, best):
        if path is not None:
            path.parent.mkdir(
                exist_ok=True
            )  # checkpoints/, never the run directory: a deleted run stays deleted
            replace_atomically(path, write)


def state_bytes(payload: Mapping[str, Any]) -> int:
    """The bytes of a checkpoint's tensors (its config, plain values only, left out)."""
    return sum(tensor_bytes(value) for key, value in payload.items() if key != "config")


def tensor_bytes(value: Any) -> int:
    """The bytes of every tensor in nested dicts, lists and tuples (a state dict's)."""
    if isinstance(value, torch.Tensor):
        return value.numel() * value.element_size()
    if isinstance(value, dict):
        return sum(tensor_bytes(item) for item in value.values())
    if isinstance(value, list | tuple):
        return sum(tensor_bytes(item) for item in value)
    return 0
