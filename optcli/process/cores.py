"""How many cores this process may run on."""

from __future__ import annotations

import os


def available_cores() -> int:
    """The cores this process may use (its affinity on Linux), else the machine's."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1
