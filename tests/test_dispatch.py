"""The order in which `compare --jobs N` hands out its runs: every arm's first seed first, then the
longest expected first, so that the workers finish together. Checked on a simulated clock: two workers,
arms of known lengths, as `WorkerPool.run` drives `LongestFirst`."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

import optcli.compare.dispatch as dispatch
from optcli.compare.dispatch import LongestFirst


@dataclass(frozen=True)
class FakeJob:
    index: int
    arm: str


def seed_major(arms: list[str], seeds: int) -> list[FakeJob]:
    return [FakeJob(seed * len(arms) + place, arm) for seed in range(seeds) for place, arm in enumerate(arms)]


def simulate(jobs, seconds, workers, monkeypatch, first_job_slowdown=0.0):
    """Hand the jobs to `workers` workers on a simulated clock, as the pool does (one per free worker);
    `seconds[arm]` is how long each of the arm's jobs takes. Returns the order handed out and the time
    at which the last worker finished."""
    clock = [0.0]
    monkeypatch.setattr(dispatch.time, "perf_counter", lambda: clock[0])
    order = LongestFirst(jobs)
    running: list[tuple[float, FakeJob]] = []
    handed: list[FakeJob] = []

    def hand_out() -> None:
        job = order.next()
        handed.append(job)
        slow = first_job_slowdown if len(handed) <= workers else 0.0  # the start-up around them
        running.append((clock[0] + seconds[job.arm] + slow, job))

    for _ in range(min(workers, len(jobs))):
        hand_out()
    while running:
        running.sort(key=lambda entry: entry[0])
        clock[0], job = running.pop(0)
        order.finished(job.index)
        if order:
            hand_out()
    return handed, clock[0]


def test_every_arm_starts_first_in_the_plans_order(monkeypatch):
    jobs = seed_major(["sgd", "momentum", "adam"], 3)
    handed, _ = simulate(jobs, {"sgd": 1.0, "momentum": 1.0, "adam": 1.0}, 2, monkeypatch)
    assert [job.index for job in handed[:3]] == [0, 1, 2]
    assert sorted(job.index for job in handed) == list(range(9))  # each job exactly once


def test_a_slow_arms_later_seeds_go_before_the_quick_ones(monkeypatch):
    arms = ["sgd", "momentum", "adam", "lbfgs"]
    seconds = {"sgd": 1.0, "momentum": 1.0, "adam": 1.0, "lbfgs": 4.0}
    jobs = seed_major(arms, 3)
    handed, finished = simulate(jobs, seconds, 2, monkeypatch)
    later = [job.arm for job in handed[len(arms) :]]
    assert later[:2] == ["lbfgs", "lbfgs"]  # as soon as lbfgs is known to be the slow one
    # 21 s of work on two workers: 10.5 at best; the plan's own order would end at 13 (lbfgs last).
    assert finished == pytest.approx(11.0)
    in_plan_order = sum(seconds[job.arm] for job in jobs)
    assert finished < in_plan_order / 2 + seconds["lbfgs"] / 2


def test_the_quick_arms_jobs_end_the_comparison_after_a_slow_start(monkeypatch):
    """The first jobs share the machine with the start-up, and take longer than the others."""
    arms = ["sgd", "adam"]
    jobs = seed_major(arms, 4)
    handed, _ = simulate(jobs, {"sgd": 1.0, "adam": 2.0}, 2, monkeypatch, first_job_slowdown=0.8)
    assert [job.arm for job in handed[-2:]] == ["sgd", "sgd"]  # the quick arm's jobs end the comparison


def test_matplotlib_is_imported_once_a_worker_has_no_more_runs(monkeypatch):
    """For the figures at the end, on the core that worker leaves idle, not sooner: while every worker
    trains, the import would take its time from them."""
    import optcli.compare.jobs as jobs_module
    from optcli.compare.job_runner import WorkerMessage
    from optcli.compare.jobs import JobOutcome, run_jobs

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
