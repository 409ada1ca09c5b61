"""Running jobs in worker processes, with their progress streamed back, and a clean Ctrl-C.

A small pool of our own rather than ProcessPoolExecutor: on Ctrl-C every worker must stop its current
run cleanly (so that run's files say `interrupted`), and a worker that dies (killed for want of
memory, say) must cost its own run only. So each worker has a pipe of its own, for its jobs and its
messages, and this process waits on every pipe and every worker's sentinel at once: a death is seen
at once, and breaks no lock that the others share. The worker's side is job_runner.py.

Where the platform has one (Linux, macOS), workers are forked from a fork server that imports torch
and the training code once, beside this process's own start-up; elsewhere each worker is spawned and
imports them itself. Neither forks a process that has run torch's thread pools, which can deadlock.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import time
from collections.abc import Callable
from multiprocessing import connection, forkserver
from typing import Any, Literal

from optcli.errors import TrainingFailed
from optcli.process.cores import available_cores
from optcli.process.interrupts import ctrl_c_held, signal_handled_by
from optcli.workers.dispatch import LongestFirst
from optcli.workers.job_runner import WorkerMessage, serve

_PRELOAD = ["optcli.workers.preload"]  # what the fork server imports before forking the workers

# What a worker calls for each job. Named rather than passed, so that the pool can start before this
# process imports torch (as importing the function would).
RUN_JOB = "optcli.compare.running.jobs:run_job"

OnMessage = Callable[[WorkerMessage], None]
PipeState = Literal["more", "empty", "closed"]

# Messages read from one worker before the others' turn and a Ctrl-C's: a run of tiny epochs sends
# thousands a second.
_MOST_READ_AT_ONCE = 100


# How long stopping workers may take to write their runs' checkpoints before they are killed (a
# checkpoint is written atomically, so a kill loses only the steps since the last one).
STOP_GRACE_S = 120.0


class WorkerPool:
    """`workers` processes that run `run_job(job, report)` for each job they are given.

    Make the pool early: torch's import (by the fork server, or by each spawned worker) starts at once
    and overlaps the caller's own work. `report(record)` in a worker reaches `on_message` in this
    process as a "record" message; the value `run_job` returns arrives as a "done" message, and a job
    whose worker died as a "lost" one. `run_job` ("module:function") should catch its own errors.
    """

    def __init__(self, workers: int, threads_per_worker: int, run_job: str = RUN_JOB) -> None:
        context = _start_context()
        pipes = [context.Pipe() for _ in range(workers)]
        self.channels = [ours for ours, _ in pipes]
        self._their_ends = [theirs for _, theirs in pipes]
        # Set before the workers are sent SIGTERM: one still starting (importing torch) reads it once
        # it can take a signal, so a stop that came too early for it is not lost. A byte of shared
        # memory, not an Event: an Event's five semaphores are registered with multiprocessing's
        # resource tracker, and one killed (SIGHUP to the process group, say) makes its successor
        # print a KeyError traceback for each at exit.
        self._stopping = context.RawValue("b", 0)
        self.processes = [
            # Not daemonic: a run's DataLoader starts worker processes of its own (data.num_workers).
            # They stop at close(), or when this process dies (see job_runner._stop_with_parent).
            context.Process(target=serve, args=(theirs, run_job, threads_per_worker, self._stopping))
            for _, theirs in pipes
        ]
        if context.get_start_method() == "forkserver":
            # Forking waits for the server's imports: left to the first run, by when this process
            # has done its own start-up beside them.
            # SIGINT ignored meanwhile, and so by the fork server from its first instruction until
            # preload.py takes over (an ignored signal stays ignored through exec, and Python then
            # leaves it so): a terminal's Ctrl-C reaches the server too, and one that came while it
            # started would print the traceback of its import.
            with signal_handled_by(signal.SIGINT, signal.SIG_IGN):
                forkserver.ensure_running()
        else:
            self._start()

    @property
    def size(self) -> int:
        """Runs at a time."""
        return len(self.processes)

    def _start(self) -> None:
        for process, theirs in zip(self.processes, self._their_ends, strict=True):
            if process.pid is None:
                # SIGTERM ignored from a spawned worker's first instruction (through exec) until it
                # can take one (serve); a fork server's workers inherit the server's (preload.py).
                try:
                    with signal_handled_by(signal.SIGTERM, signal.SIG_IGN):
                        process.start()
                except (OSError, EOFError) as error:  # the fork server killed, say
                    raise WorkersLost(
                        f"a worker process could not be started ({type(error).__name__}: {error}; the process "
                        "that forks them was killed?); what finished is kept: rerun with --resume to go on"
                    ) from None
                theirs.close()  # the worker has its own copy: a dead worker's pipe then reads as closed

    def run(self, jobs: list[Any], on_message: OnMessage) -> None:
        """Run every job (the pool stays up for more until `close`), handed out one at a time in the
        order of `LongestFirst`; on Ctrl-C, stop the runs under way cleanly, then raise
        KeyboardInterrupt."""
        self._start()
        order = LongestFirst(jobs)
        holding: dict[int, int] = {}  # worker -> the job it runs

        def hand_out() -> None:
            """A job to every idle worker, while there are jobs."""
            for worker, process in enumerate(self.processes):
                if order and worker not in holding and not _gone(process):
                    job = order.next()
                    try:
                        self.channels[worker].send((job.index, job))
                    except OSError:  # it died since it last spoke: the job waits for another
                        order.put_back(job)
                        continue
                    holding[worker] = job.index

        try:
            with ctrl_c_held():
                hand_out()
            while holding:
                ready = self._wait(holding)
                with ctrl_c_held():  # (each batch read whole and passed on; Ctrl-C after it)
                    for worker, message in self._read(holding, ready):
                        if message.kind in ("done", "lost"):
                            del holding[worker]
                            order.finished(message.job)
                        on_message(message)
                    hand_out()
            if order:
                raise WorkersLost(
                    f"every worker process ended before the jobs were done ({_how_it_ended(self.processes[0].exitcode)}: "
                    "killed from outside?); what finished is kept: rerun with --resume to go on"
                )
        except KeyboardInterrupt:
            self._stop(on_message)
            raise

    def _wait(self, holding: dict[int, int]) -> list[Any]:
        """Until a busy worker has sent something or ended: those pipes and sentinels."""
        sentinels = [self.processes[worker].sentinel for worker in holding]
        return connection.wait([*sentinels, *(self.channels[worker] for worker in holding)])

    def _read(self, holding: dict[int, int], ready: list[Any]) -> list[tuple[int, WorkerMessage]]:
        """What the busy workers have sent. A worker that has ended (its pipe closed, or its sentinel
        among `ready`) is read to the end of what it sent; if that did not end its job, a "lost"
        message does."""
        received: list[tuple[int, WorkerMessage]] = []
        for worker, job in holding.items():
            messages, state = _available(self.channels[worker])
            received += [(worker, message) for message in messages]
            ended = state == "closed" or (state == "empty" and self.processes[worker].sentinel in ready)
            if ended and not any(message.kind == "done" for message in messages):
                self.processes[worker].join(timeout=5)  # (ended: its exit code is a moment away)
                received.append(
                    (worker, WorkerMessage(job, "lost", _how_it_ended(self.processes[worker].exitcode)))
                )
        return received

    def _stop(self, on_message: OnMessage) -> None:
        """Ask every worker to stop its run, and pass on what they report while they do."""
        started = [worker for worker, process in enumerate(self.processes) if process.pid is not None]
        self._stopping.value = 1
        for worker in started:
            if self.processes[worker].is_alive():
                os.kill(self.processes[worker].pid, signal.SIGTERM)  # type: ignore[arg-type]
        deadline = time.monotonic() + STOP_GRACE_S
        try:
            while True:
                running = [worker for worker in started if self.processes[worker].is_alive()]
                for worker in started:  # (the last time round, what they sent just before exiting)
                    _pass_on_everything(self.channels[worker], on_message)
                if not running:
                    break
                if time.monotonic() > deadline:  # no wait without an end: its checkpoints are atomic
                    for worker in running:
                        self.processes[worker].kill()
                connection.wait([self.processes[worker].sentinel for worker in running], timeout=0.1)
        except KeyboardInterrupt:  # a second Ctrl-C: stop waiting
            for process in self.processes:
                process.kill()

    def close(self) -> None:
        for process, channel in zip(self.processes, self.channels, strict=True):
            if process.is_alive():
                with contextlib.suppress(OSError):
                    channel.send(None)  # the stop sign
        for process in self.processes:
            if process.pid is None:
                continue  # never started: no job came
            process.join(timeout=10)
            if process.is_alive():
                process.kill()


class WorkersLost(TrainingFailed):
    """The pool has no worker left to run the jobs (killed from outside): a failure of the command,
    said in words (exit 1), never an internal error."""


def start_workers(workers: int) -> WorkerPool | None:
    """Worker processes for `--jobs N` (None for 1): the machine's cores are shared out among them, so
    that they do not compete for the same ones. Start them first: they take a second or two to import
    torch, beside this process's own start-up."""
    if workers <= 1:
        return None
    return WorkerPool(workers, max(1, available_cores() // workers))


def _start_context() -> Any:
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(_PRELOAD)
    return context


def _gone(process: Any) -> bool:
    """Ended, as its sentinel says as soon as it has (its exit code may not be known yet)."""
    return process.pid is not None and bool(connection.wait([process.sentinel], timeout=0))


def _available(channel: Any) -> tuple[list[WorkerMessage], PipeState]:
    """The messages waiting in a worker's pipe (at most _MOST_READ_AT_ONCE), and whether more wait,
    none do, or the pipe has closed (the worker ended)."""
    messages: list[WorkerMessage] = []
    try:
        while channel.poll():
            if len(messages) == _MOST_READ_AT_ONCE:
                return messages, "more"
            messages.append(channel.recv())
    except (EOFError, OSError):
        return messages, "closed"
    return messages, "empty"


def _pass_on_everything(channel: Any, on_message: OnMessage) -> None:
    """Every message waiting in the pipe, to `on_message`."""
    state: PipeState = "more"
    while state == "more":
        with ctrl_c_held():
            messages, state = _available(channel)
            for message in messages:
                on_message(message)


def _how_it_ended(exitcode: int | None) -> str:
    if exitcode is None:
        return "its exit code unknown"
    if exitcode >= 0:
        return f"with exit code {exitcode}"
    name = signal.Signals(-exitcode).name
    return f"killed by {name}" + (" (out of memory, or kill -9)" if -exitcode == signal.SIGKILL else "")
