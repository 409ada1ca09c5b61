"""A worker process of compare's pool (see pool.py): it takes jobs from its own pipe, runs them and
sends their progress and outcome back through it.

It ignores the terminal's SIGINT: the main process decides, and sends SIGTERM, which becomes a
KeyboardInterrupt inside the run (the run stops with a checkpoint and says `interrupted`), or between
two jobs ends the worker. Messages are written whole: a SIGTERM in the middle of a write would leave
half of one in the pipe, so it waits until the write is done. A stop that comes while the worker
starts (importing torch) is noted, not raised, and reaches the first job at its first report, so
that every job handed out ends with its outcome; after the last job a stop has nothing to stop.
"""

from __future__ import annotations

import contextlib
import gc
import importlib
import multiprocessing
import os
import signal
import threading
from dataclasses import dataclass
from multiprocessing import connection
from multiprocessing.connection import Connection
from typing import Any

from optcli.process.interrupts import signal_held
from optcli.process.torch_import import collections_paused


@dataclass(frozen=True)
class WorkerMessage:
    job: int  # the job's index
    # "record" (a training record), "done" (the job's outcome), or, made by the main process, "lost"
    # (how the worker running the job died)
    kind: str
    payload: Any


_stopping = False  # the main process asked this worker to stop (or has gone)


def serve(channel: Connection, run_job_name: str, threads: int, stop: Any = None) -> None:
    """Run each job that comes through `channel` with the function `run_job_name` ("module:name")
    names, until None comes, the main process asks this worker to stop (SIGTERM, or the shared byte
    `stop`, which it sets to 1 first), or the main process is gone."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the main process decides; it sends SIGTERM
    signal.signal(signal.SIGTERM, _note_stop)  # (starting: noted, and taken up at the first report)
    with contextlib.suppress(KeyboardInterrupt):  # one that came as the last job ended: nothing to stop
        _serve(channel, run_job_name, threads, stop)
    gc.freeze()  # a quick exit: see optcli.cli.main


def _serve(channel: Connection, run_job_name: str, threads: int, stop: Any) -> None:
    global _stopping
    _stop_with_parent()
    with collections_paused():  # (already imported, unless this worker was spawned)
        import torch

        module, name = run_job_name.split(":")
        run_job = getattr(importlib.import_module(module), name)
    # A run's DataLoader starts its own workers the platform's way, as under `optcli train` (fork on
    # Linux), not the way this worker was started: a fresh process could not import a Dataset loaded
    # from a file next to the config.
    multiprocessing.set_start_method(None, force=True)
    torch.set_num_threads(threads)
    _stopping = _stopping or (stop is not None and stop.value == 1)  # a SIGTERM while it was ignored
    if _stopping and not channel.poll(1.0):
        # Asked to stop while starting, and no job was sent before that: none will come (waiting for
        # one would never end). A job sent before it is taken, and stops at once, reporting so.
        return
    try:
        signal.signal(signal.SIGTERM, _stop_now)
        while (task := channel.recv()) is not None:
            index, job = task

            def report(record: Any, index: int = index) -> None:
                if _stopping:  # asked to stop before the job started: it stops at once
                    raise KeyboardInterrupt
                _send(channel, WorkerMessage(index, "record", record))

            result = run_job(job, report)
            _send(channel, WorkerMessage(index, "done", result))
            if _stopping or getattr(result, "status", None) == "interrupted":
                break  # the run recorded its interruption; take no more jobs
    except (KeyboardInterrupt, EOFError):
        pass  # asked to stop between two jobs, or the main process has gone
    finally:
        signal.signal(signal.SIGTERM, _note_stop)  # nothing left to stop


def _send(channel: Connection, message: WorkerMessage) -> None:
    """The whole message, or none of it; a stop that comes meanwhile takes effect after."""
    try:
        with signal_held(signal.SIGTERM):
            channel.send(message)
    except OSError:  # the main process has gone: stop as it would have asked
        _stop_now()


def _note_stop(signum: int = signal.SIGTERM, frame: Any = None) -> None:
    """SIGTERM's handler while the worker starts and once its jobs are done: noted only."""
    global _stopping
    _stopping = True


def _stop_now(signum: int = signal.SIGTERM, frame: Any = None) -> None:
    """SIGTERM's handler: the main process asks this worker to stop."""
    global _stopping
    _stopping = True
    raise KeyboardInterrupt


def _stop_with_parent() -> None:
    """SIGTERM to this worker when the process that started it dies (killed outright, say), so that
    the run under way stops with a checkpoint instead of going on alone beside a `compare --resume`.
    (Not the operating system's parent-death signal: a forked worker's parent is the fork server,
    which lives on while any worker does.)"""
    parent = multiprocessing.parent_process()
    if parent is None:
        return

    def watch() -> None:
        connection.wait([parent.sentinel])  # readable once the parent has gone
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="optcli-parent-watch", daemon=True).start()
