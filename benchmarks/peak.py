"""What the memory benchmarks measure: one optcli command in a process of its own."""

from __future__ import annotations

import subprocess
import sys


def command_peak(*arguments: str) -> tuple[float, float]:
    """`optcli ARGUMENTS...` in a child process of its own: its peak resident MiB and its seconds
    (read by a parent made for it, so that no other command's peak is mixed in)."""
    script = (
        "import resource, subprocess, sys, time; started = time.perf_counter(); "
        f"subprocess.run([sys.executable, '-m', 'optcli', *{list(arguments)!r}], check=True, capture_output=True); "
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, time.perf_counter() - started)"
    )
    output = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
    peak, seconds = output.split()
    return float(peak), float(seconds)
