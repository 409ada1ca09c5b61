"""Running jobs in worker processes, with their progress streamed back, and a clean Ctrl-C.

A small pool of our own rather than ProcessPoolExecutor, for one reason: on Ctrl-C every worker must
stop its current run cleanly (so that run's files say `interrupted`), which needs each worker's pid.
Workers ignore the terminal's SIGINT; the parent sends each one SIGTERM, which a worker turns into
KeyboardInterrupt inside its run. A second Ctrl-C kills them outright.

Where the platform has one (Linux, macOS), workers are forked from a fork server that imports torch
and the training code once, beside this process's own start-up; elsewhere each worker is spawned and
imports them itself. Neither forks a process that has run torch's thread pools, which can deadlock.
"""

from __future__ import annotations

import contextlib
import gc
import importlib
import multiprocessing
import os
import queue
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from multiprocessing import connection, forkserver
from typing import Any

from optcli.compare.dispatch import LongestFirst

# Seconds between checks that the workers are still alive while waiting for their messages.
_POLL_S = 0.5

_PRELOAD = ["optcli.compare.preload"]  # what the fork server imports before forking the workers

# What a worker calls for each job. Named rather than passed, so that the pool can start before this
# process imports torch (as importing the function would).
RUN_JOB = "optcli.compare.jobs:run_job"


@dataclass(frozen=True)
class WorkerMessage:
    job: int  # the job's index
    # "taken" (payload: the worker's pid), "record" (a training record), "done" (the job's outcome), or
    # "lost" (how the worker that had taken it died)
    kind: str
    payload: Any


class WorkerPool:
    """`workers` processes that run `run_job(job, report)` for each job they are given.

    Make the pool early: torch's import (by the fork server, or by each spawned worker) starts at once
    and overlaps the caller's own work. `report(record)` in a worker reaches `on_message` in
    this process as a "record" message; the value `run_job` returns arrives as a "done" message.
    `run_job` ("module:function") should catch its own errors.
    """

    def __init__(self, workers: int, threads_per_worker: int, run_job: str = RUN_JOB) -> None:
        context = _start_context()
        self.tasks: Any = context.Queue()
        self.messages: Any = context.Queue()
        self.processes = [
            # Not daemonic: a run's DataLoader starts worker processes of its own (data.num_workers).
            # They stop at close(), or when this process dies (see _stop_with_parent).
            context.Process(target=_worker, args=(self.tasks, self.messages, run_job, threads_per_worker))
            for _ in range(workers)
        ]
        if context.get_start_method() == "forkserver":
            # Forking waits for the server's imports: left to the first run, by when this process
            # has done its own start-up beside them.
            with _ctrl_c_ignored():  # by the server from its first instruction (preload.py takes over)
                forkserver.ensure_running()
        else:
            self._start()

    def _start(self) -> None:
        for process in self.processes:
            if process.pid is None:
                process.start()

    def run(self, jobs: list[Any], on_message: Callable[[WorkerMessage], None]) -> None:
        """Run every job (the pool stays up for more until `close`), handed out one at a time in the
        order of `LongestFirst`; on Ctrl-C, stop the runs under way cleanly, then raise
        KeyboardInterrupt."""
        self._start()
        order = LongestFirst(jobs)

        def hand_out() -> None:
            job = order.next()
            self.tasks.put((job.index, job))

        def received(message: WorkerMessage) -> None:
            if message.kind in ("done", "lost"):
                order.finished(message.job)
                if order:  # the worker that sent it is free
                    hand_out()
            on_message(message)

        for _ in range(min(len(self.processes), len(jobs))):
            hand_out()
        try:
            _receive(self.messages, self.processes, len(jobs), received)
        except KeyboardInterrupt:
            _stop(self.processes, self.messages, on_message)
            raise

    def close(self) -> None:
        for process in self.processes:
            if process.is_alive():
                self.tasks.put(None)  # one stop sign per worker
        for process in self.processes:
            if process.pid is None:
                continue  # never started: no job came
            process.join(timeout=10)
            if process.is_alive():
                process.kill()


def start_workers(workers: int) -> WorkerPool | None:
    """Worker processes for `--jobs N` (None for 1): the machine's cores are shared out among them, so
    that they do not compete for the same ones. Start them first: they take a second or two to import
    torch, beside this process's own start-up."""
    if workers <= 1:
        return None
    return WorkerPool(workers, max(1, available_cores() // workers))


@contextlib.contextmanager
def _ctrl_c_ignored() -> Iterator[None]:
    """SIGINT ignored meanwhile, and so in the processes started meanwhile (an ignored signal stays
    ignored through exec, and Python then leaves it so): a terminal's Ctrl-C reaches them too, and
    one that came while the fork server started would print the traceback of its import."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _start_context() -> Any:
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(_PRELOAD)
    return context


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _receive(
    messages: Any, processes: list[Any], expected: int, on_message: Callable[[WorkerMessage], None]
) -> None:
    """Pass the workers' messages on until `expected` jobs have ended. A worker that dies in the middle
    of a job (killed for want of memory, say) costs that job, passed on as "lost", not the others."""
    ended = 0
    holding: dict[int, int] = {}  # worker pid -> the job it took
    next_check = time.monotonic() + _POLL_S
    while ended < expected:
        with contextlib.suppress(queue.Empty):
            message = messages.get(timeout=_POLL_S)
            if message.kind == "taken":
                holding[message.payload] = message.job
            else:
                if message.kind == "done":
                    holding = {pid: job for pid, job in holding.items() if job != message.job}
                    ended += 1
                on_message(message)
        if time.monotonic() < next_check:
            continue
        next_check = time.monotonic() + _POLL_S
        for process in processes:
            if process.exitcode is not None and process.pid in holding:
                on_message(WorkerMessage(holding.pop(process.pid), "lost", _how_it_ended(process.exitcode)))
                ended += 1
        if ended < expected and not any(process.is_alive() for process in processes):
            raise RuntimeError("every worker process exited before the jobs were done")


def _how_it_ended(exitcode: int) -> str:
    if exitcode >= 0:
        return f"with exit code {exitcode}"
    name = signal.Signals(-exitcode).name
    return f"killed by {name}" + (" (out of memory, or kill -9)" if -exitcode == signal.SIGKILL else "")


def _stop(processes: list[Any], messages: Any, on_message: Callable[[WorkerMessage], None]) -> None:
    """Ask every worker to stop its run, and pass on what they report while they do."""
    for process in processes:
        if process.is_alive() and process.pid is not None:
            os.kill(process.pid, signal.SIGTERM)

    def pass_on(message: WorkerMessage) -> None:
        if message.kind != "taken":
            on_message(message)

    try:
        while any(process.is_alive() for process in processes):
            try:
                pass_on(messages.get(timeout=_POLL_S))
            except queue.Empty:
                continue
        while True:  # what they reported just before exiting
            pass_on(messages.get_nowait())
    except queue.Empty:
        pass
    except KeyboardInterrupt:  # a second Ctrl-C: stop waiting
        for process in processes:
            process.kill()


_stopping = False  # set in a worker once the parent has asked it to stop


def _raise_interrupt(signum: int, frame: Any) -> None:
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


def _worker(tasks: Any, messages: Any, run_job_name: str, threads: int) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides; it sends SIGTERM
    signal.signal(signal.SIGTERM, _raise_interrupt)
    _stop_with_parent()
    import torch

    module, name = run_job_name.split(":")
    run_job = getattr(importlib.import_module(module), name)
    # A run's DataLoader starts its own workers the platform's way, as under `optcli train` (fork on
    # Linux), not the way this worker was started: a fresh process could not import a Dataset loaded
    # from a file next to the config.
    multiprocessing.set_start_method(None, force=True)
    torch.set_num_threads(threads)
    try:
        while (task := tasks.get()) is not None:
            index, job = task
            messages.put(WorkerMessage(index, "taken", os.getpid()))

            def report(record: Any, index: int = index) -> None:
                messages.put(WorkerMessage(index, "record", record))

            result = run_job(job, report)
            messages.put(WorkerMessage(index, "done", result))
            if _stopping or getattr(result, "status", None) == "interrupted":
                break  # the run recorded its interruption; take no more jobs
    except KeyboardInterrupt:
        pass  # asked to stop between two jobs
    gc.freeze()  # a quick exit: see optcli.cli.main
