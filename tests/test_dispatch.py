"""The order in which `compare --jobs N` hands out its runs: every arm's first seed first, then the
longest expected first, so that the workers finish together. `LongestFirst`'s choices, with the time
each job took set on a clock of the test's."""

from __future__ import annotations

from dataclasses import dataclass

import optcli.workers.dispatch as dispatch
from optcli.workers.dispatch import LongestFirst


@dataclass(frozen=True)
class FakeJob:
    index: int
    arm: str


def seed_major(arms: list[str], seeds: int) -> list[FakeJob]:
    return [FakeJob(seed * len(arms) + place, arm) for seed in range(seeds) for place, arm in enumerate(arms)]


def took(order: LongestFirst[FakeJob], job: FakeJob, seconds: float, clock: list[float]) -> None:
    """`job`, handed out at the clock's time 0, finished after `seconds`."""
    clock[0] = seconds
    order.finished(job.index)


def clocked(monkeypatch) -> list[float]:
    clock = [0.0]
    monkeypatch.setattr(dispatch.time, "perf_counter", lambda: clock[0])
    return clock


def test_every_arm_starts_first_in_the_plans_order(monkeypatch):
    clocked(monkeypatch)
    order = LongestFirst(seed_major(["sgd", "momentum", "adam"], 3))
    assert [order.next().index for _ in range(3)] == [0, 1, 2]
    assert sorted(order.next().index for _ in range(6)) == list(range(3, 9)) and not order  # each once


def test_a_slow_arms_later_seeds_go_before_the_quick_ones(monkeypatch):
    clock = clocked(monkeypatch)
    seconds = {"sgd": 1.0, "momentum": 1.0, "adam": 1.0, "lbfgs": 4.0}
    order = LongestFirst(seed_major(list(seconds), 3))
    for job in [order.next() for _ in seconds]:
        took(order, job, seconds[job.arm], clock)
    later = [order.next().arm for _ in range(8)]
    assert later[:2] == ["lbfgs", "lbfgs"] and set(later[2:]) == {"sgd", "momentum", "adam"}


def test_an_arm_is_judged_by_its_quickest_run_so_far(monkeypatch):
    """The first jobs share the machine with the start-up: a slow first run of the quick arm does not
    make it look slow once a later one was quick."""
    clock = clocked(monkeypatch)
    order = LongestFirst(seed_major(["sgd", "adam"], 4))
    sgd, adam = order.next(), order.next()
    took(order, sgd, 3.0, clock)  # slowed by the start-up
    took(order, adam, 2.0, clock)
    clock[0] = 0.0
    assert [order.next().arm, order.next().arm] == ["sgd", "sgd"]  # 3 s expected, against adam's 2
    took(order, FakeJob(4, "sgd"), 1.0, clock)  # sgd's second run, at its true speed
    remaining = [order.next().arm for _ in range(4)]
    assert remaining == ["adam", "adam", "adam", "sgd"]  # the quick arm's job ends the comparison


def test_matplotlib_is_imported_once_a_worker_has_no_more_runs(monkeypatch):
    """For the figures at the end, on the core that worker leaves idle, not sooner: while every worker
    trains, the import would take its time from them."""
    import optcli.compare.running.jobs as jobs_module
    from optcli.compare.running.jobs import JobOutcome, run_jobs
    from optcli.workers.job_runner import WorkerMessage

    finished: list[int] = []
    imports: list[int] = []  # how many runs had finished at each call
    monkeypatch.setattr(jobs_module, "import_aside", lambda: imports.append(len(finished)))

    class TwoWorkers:
        size = 2

        def run(self, jobs, on_message):
            for job in jobs:
                finished.append(job.index)
                on_message(WorkerMessage(job.index, "done", JobOutcome(job.index, "ok")))

    run_jobs([FakeJob(index, "a") for index in range(5)], TwoWorkers(), lambda index, event: None)  # type: ignore[arg-type]
    assert imports and imports[0] == 4  # one run left: a worker is idle for good
