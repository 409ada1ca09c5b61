"""compare's worker pool when a worker dies: killed in the middle of a job (the out-of-memory killer,
say), or while it waited for one. The pool runs this module's `run_fake_job` in real worker
processes; `optcli compare` itself is tested in test_compare.py and test_compare_resume.py."""

from __future__ import annotations

import functools
import multiprocessing
import os
import signal
import threading
import time
from dataclasses import dataclass
from multiprocessing import forkserver
from pathlib import Path
from typing import Any

import pytest

from optcli.workers import pool as workers
from optcli.workers.pool import WorkerPool

pytestmark = pytest.mark.slow  # real processes, each importing torch


@dataclass(frozen=True)
class FakeJob:
    index: int
    arm: str
    seconds: float = 0.05


def run_fake_job(job: FakeJob, report: Any) -> str:
    if job.arm == "crash":
        os.kill(os.getpid(), signal.SIGKILL)  # as the out-of-memory killer would, mid-job
    if job.arm == "flood":  # large messages without a pause, until asked to stop
        try:
            while True:
                report(FLOOD)
        except KeyboardInterrupt:
            return "interrupted"
    report(f"started {job.index}")
    time.sleep(job.seconds)
    return f"result {job.index}"


FLOOD = bytes(range(256)) * 4096  # 1 MiB: each message takes many reads of the pipe


@pytest.fixture(params=["forkserver", "spawn"])
def start_method(request) -> str:
    """As on Linux and macOS (workers forked from a fork server), and as elsewhere (spawned)."""
    return request.param


@pytest.fixture
def pool(start_method, monkeypatch):
    monkeypatch.setattr(workers, "_start_context", functools.partial(start_context, start_method))
    started = WorkerPool(2, 1, run_job=f"{__name__}:run_fake_job")
    yield started
    started.close()


def start_context(method: str) -> Any:
    context = multiprocessing.get_context(method)
    if method == "forkserver":
        context.set_forkserver_preload(workers._PRELOAD)
    return context


def run_all(pool: WorkerPool, jobs: list[FakeJob]) -> dict[int, list[tuple[str, Any]]]:
    seen: dict[int, list[tuple[str, Any]]] = {}
    pool.run(jobs, lambda message: seen.setdefault(message.job, []).append((message.kind, message.payload)))
    return seen


def test_a_worker_killed_mid_job_costs_that_job_only(pool):
    jobs = [FakeJob(0, "crash"), *(FakeJob(index, "sleep") for index in range(1, 6))]
    seen = run_all(pool, jobs)
    kind, how = seen[0][-1]
    assert kind == "lost" and how.startswith("killed by SIGKILL")
    for index in range(1, 6):  # the other worker ran the rest
        assert seen[index] == [("record", f"started {index}"), ("done", f"result {index}")]
    assert sum(process.is_alive() for process in pool.processes) == 1


def test_a_worker_that_died_while_waiting_is_given_no_job(pool):
    run_all(pool, [FakeJob(0, "sleep")])  # both workers start; the second idles
    os.kill(pool.processes[1].pid, signal.SIGKILL)
    pool.processes[1].join(timeout=10)
    seen = run_all(pool, [FakeJob(index, "sleep") for index in range(1, 5)])
    assert {index: events[-1] for index, events in seen.items()} == {
        index: ("done", f"result {index}") for index in range(1, 5)
    }


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads a process's state in /proc (Linux)")
def test_a_job_handed_to_a_worker_that_just_died_goes_to_another(pool, start_method):
    """Dead, but not yet reaped (a fork server, which would report it, is held still meanwhile): the
    job goes to the other worker."""
    run_all(pool, [FakeJob(0, "sleep")])
    server = forkserver._forkserver._forkserver_pid if start_method == "forkserver" else None  # type: ignore[attr-defined]
    if server is not None:
        os.kill(server, signal.SIGSTOP)
    try:
        os.kill(pool.processes[1].pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while not dead_and_unreaped(pool.processes[1].pid):
            assert time.monotonic() < deadline
            time.sleep(0.01)
        seen = run_all(pool, [FakeJob(index, "sleep") for index in range(1, 4)])
    finally:
        if server is not None:
            os.kill(server, signal.SIGCONT)
    assert {index: events[-1] for index, events in seen.items()} == {
        index: ("done", f"result {index}") for index in range(1, 4)
    }


def dead_and_unreaped(pid: int) -> bool:
    """A zombie whose every thread has ended (until the last one has, they hold its files open)."""
    return (
        Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z" and len(os.listdir(f"/proc/{pid}/task")) == 1
    )


def test_with_every_worker_gone_the_pool_says_so(pool):
    with pytest.raises(workers.WorkersLost, match=r"every worker process ended .* rerun with --resume"):
        run_all(pool, [FakeJob(index, "crash") for index in range(3)])


def test_a_fork_server_killed_while_it_starts_the_workers_is_said_in_words(monkeypatch):
    """The process that forks the workers killed while the pool waits on it for a worker (the
    battery's kill -9 of it): a failure naming it, not an internal error. It is held still first, so
    that the pool is surely waiting on it when the kill comes."""
    monkeypatch.setattr(workers, "_start_context", functools.partial(start_context, "forkserver"))
    started = WorkerPool(2, 1, run_job=f"{__name__}:run_fake_job")
    server = forkserver._forkserver._forkserver_pid  # type: ignore[attr-defined]
    os.kill(server, signal.SIGSTOP)
    threading.Timer(0.5, os.kill, (server, signal.SIGKILL)).start()
    try:
        with pytest.raises(workers.WorkersLost, match="a worker process could not be started"):
            run_all(started, [FakeJob(0, "sleep")])
    finally:
        started.close()
        deadline = time.monotonic() + 10
        while not dead_and_unreaped(server):  # (then the next pool's start sees it gone and starts another)
            assert time.monotonic() < deadline
            time.sleep(0.01)


@pytest.fixture
def ctrl_c_as_a_terminal_leaves_it():
    """SIGINT raising KeyboardInterrupt in this process, as in a command started from a terminal, even
    where the tests run in a shell's background (which starts them with SIGINT ignored)."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def test_ctrl_c_never_cuts_a_message_in_two(pool, ctrl_c_as_a_terminal_leaves_it):
    """A terminal's Ctrl-C that reaches this process while it reads a message: the message is read
    whole, then every run is stopped and reports it, and the KeyboardInterrupt comes through."""
    seen: list[tuple[int, str, Any]] = []  # (job, kind, the payload, or whether it came whole)

    def on_message(message: Any) -> None:
        whole = message.payload == FLOOD if message.kind == "record" else message.payload
        seen.append((message.job, message.kind, whole))  # (not the MiB itself: a lost Ctrl-C floods)
        if len(seen) == 4:  # soon, in the middle of reading another
            threading.Timer(0.01, signal.pthread_kill, (threading.main_thread().ident, signal.SIGINT)).start()
        assert len(seen) < 5_000, "the Ctrl-C never stopped the runs"

    with pytest.raises(KeyboardInterrupt):
        pool.run([FakeJob(0, "flood"), FakeJob(1, "flood")], on_message)
    assert all(whole for _, kind, whole in seen if kind == "record")
    assert sorted((job, payload) for job, kind, payload in seen if kind == "done") == [
        (0, "interrupted"),
        (1, "interrupted"),
    ]


def test_a_worker_told_to_stop_while_starting_exits_without_waiting_for_a_job(start_method):
    """A Ctrl-C that reaches a comparison while its workers still import torch: each one ends as soon
    as it is up, instead of waiting for a job that will never come (which hung the main process)."""
    from optcli.workers.job_runner import serve

    context = start_context(start_method)
    stop = context.RawValue("b", 1)  # set, as the pool sets it before its SIGTERM
    ours, theirs = context.Pipe()
    process = context.Process(target=serve, args=(theirs, f"{__name__}:run_fake_job", 1, stop))
    process.start()
    process.join(timeout=60)
    hung = process.is_alive()
    if hung:
        process.kill()
        process.join()
    ours.close()
    assert not hung and process.exitcode == 0
