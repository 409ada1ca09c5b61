"""The training clock: a run's training seconds, less what is not training (evaluations, compiling,
the caller's work on each record), carried over a resume."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator


class TrainingClock:
    """Training seconds: wall time since `start`, less the time spent outside the loop on its records."""

    def __init__(self) -> None:
        self.started = time.perf_counter()
        self.paused_s = 0.0
        self.offset_s = 0.0  # training time before a resume

    def start(self, offset_s: float = 0.0) -> None:
        self.started, self.paused_s, self.offset_s = time.perf_counter(), 0.0, offset_s

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """Time inside is not training time (evaluations, the caller's work on each record)."""
        paused_at = time.perf_counter()
        try:
            yield
        finally:
            self.paused_s += time.perf_counter() - paused_at

    def elapsed(self) -> float:
        return time.perf_counter() - self.started - self.paused_s + self.offset_s
