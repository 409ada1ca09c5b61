"""The order in which local workers take their jobs: so that they finish together.

Jobs are handed out one at a time, as workers free up. Each arm's first job goes out first, in the
plan's order (every arm then shows early results, and has a measured time). After that the job
expected to take longest goes next, judged by its arm's quickest job so far: the last jobs are then
the short ones, and no worker idles long while another finishes a slow arm's last seed (longest
processing time first, the classic rule for sharing jobs among machines).
"""

from __future__ import annotations

import time
from collections import defaultdict
from typing import Generic, Protocol, TypeVar


class Dispatchable(Protocol):
    @property
    def index(self) -> int: ...
    @property
    def arm(self) -> str: ...


JobT = TypeVar("JobT", bound=Dispatchable)


class LongestFirst(Generic[JobT]):
    """Hands out `jobs` by the rule above; `finished(index)` records a job's time from being handed out
    to its end."""

    def __init__(self, jobs: list[JobT]) -> None:
        self.pending = list(jobs)
        self.started: dict[int, tuple[str, float]] = {}
        self.seconds: defaultdict[str, list[float]] = defaultdict(list)

    def __bool__(self) -> bool:
        return bool(self.pending)

    def next(self) -> JobT:
        running = {arm for arm, _ in self.started.values()}
        position = min(range(len(self.pending)), key=lambda place: self._priority(place, running))
        job = self.pending.pop(position)
        self.started[job.index] = (job.arm, time.perf_counter())
        return job

    def put_back(self, job: JobT) -> None:
        """A job handed out that never started (its worker was gone): it goes out again first."""
        self.started.pop(job.index, None)
        self.pending.insert(0, job)

    def finished(self, index: int) -> None:
        if index in self.started:
            arm, start = self.started.pop(index)
            self.seconds[arm].append(time.perf_counter() - start)

    def _priority(self, place: int, running: set[str]) -> tuple[int, float, int]:
        """Lowest first: an arm never started, then the longest expected, then the plan's order."""
        arm = self.pending[place].arm
        times = self.seconds.get(arm)
        if not times and arm not in running:
            return 0, 0.0, place
        # Its quickest so far: the first jobs are slowed by the start-up around them.
        expected = min(times) if times else float("inf")  # (its first job still runs)
        return 1, -expected, place
