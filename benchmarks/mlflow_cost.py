"""What logging to MLflow costs a run, and where it goes: optcli's sending process against MLflow's
own asynchronous logging (`synchronous=False`, a queue and a thread inside the training process), on
the same runs, against the same run without MLflow.

The run is benchmarks/overhead.py's (the guide's SimpleNN, Adam, StepLR, clipping, batch 64, a
metrics.csv row every step), logging loss, lr and grad_norm every step (output.mlflow's default)
into a local SQLite store made beforehand (as a server's would be). Each condition is timed from
the sinks' opening to their closing, in `optcli train`'s order: the MLflow sink opened before the
session's build, its close waiting until the last value is in the store. The conditions:

- none: the CSV files, summary and plain display only (what every run has);
- sender: optcli's `output.mlflow` with `log_every: 1` (the values piped to a process of its own,
  which logs them);
- sender, auto: the same with `log_every: auto`, the default (about 1,000 steps' values a metric);
- async, a call a step: `MlflowClient.log_batch(..., synchronous=False)` at every step, as MLflow's
  documentation shows it;
- async, batched: the same call with the values gathered as the sender gathers them (FLUSH_INTERVAL_S).

Then the sender's cost taken apart: the loop's own share (the time inside the sink's `handle`), the
sending process's CPU for a run of 10 steps (its fixed start-up: an interpreter, MLflow's import,
the store's opening) and, beyond that, per value logged.

    python benchmarks/mlflow_cost.py [--steps 10000] [--rounds 2] [--minutes 0]

--minutes M also times a run of about M minutes (its steps from the first round's speed) without
MLflow and with it as configured by default (the sender, log_every auto), once each.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from overhead import _feed, _file_sinks, guide_spec  # this folder: run as a script

from optcli.config.spec import RunSpec
from optcli.train.records import Record, RunFinished, StepRecord
from optcli.train.session import build_session
from optcli.train.sinks import RunOutcome
from optcli.train.sinks.mlflow_logging import FLUSH_INTERVAL_S, MlflowLogger


class AsyncMlflow:
    """A sink logging the sender's step values through MLflow's own asynchronous logging."""

    def __init__(self, uri: str, batched: bool) -> None:
        from mlflow import MlflowClient

        self.client = MlflowClient(uri)
        self.run_id = self.client.create_run("0").info.run_id
        self.batched = batched
        self.pending: list[Any] = []
        self.next_flush = time.perf_counter() + FLUSH_INTERVAL_S
        self.started = time.time()

    def handle(self, record: Record) -> None:
        from mlflow.entities import Metric

        if type(record) is StepRecord:
            stamp = int((self.started + record.elapsed_s) * 1000)
            self.pending += [
                Metric("loss", record.loss, stamp, record.step),
                Metric("lr", record.lr, stamp, record.step),
                Metric("grad_norm", record.grad_norm or 0.0, stamp, record.step),
            ]
            if not self.batched or time.perf_counter() >= self.next_flush:
                self._flush()
        elif isinstance(record, RunFinished):
            self._flush()

    def _flush(self) -> None:
        if self.pending:
            self.client.log_batch(self.run_id, metrics=self.pending, synchronous=False)
            self.pending = []
        self.next_flush = time.perf_counter() + FLUSH_INTERVAL_S

    def close(self, outcome: RunOutcome) -> None:
        import mlflow

        self._flush()
        mlflow.flush_async_logging()  # every value in the store, as the sender's close waits for
        self.client.set_terminated(self.run_id)


class Timed:
    """A sink's `handle` timed: the loop's own share of its cost."""

    def __init__(self, sink: Any) -> None:
        self.sink, self.seconds = sink, 0.0

    def handle(self, record: Record) -> None:
        started = time.perf_counter()
        self.sink.handle(record)
        self.seconds += time.perf_counter() - started

    def close(self, outcome: RunOutcome) -> None:
        self.sink.close(outcome)


def timed_run(spec: RunSpec, uri: str, condition: str) -> tuple[float, float, float]:
    """Seconds from the sinks' opening to their closing; the seconds inside the MLflow sink's
    `handle`; this process's CPU seconds meanwhile."""
    cpu = time.process_time()
    with tempfile.TemporaryDirectory() as directory:
        start = time.perf_counter()
        sinks = _file_sinks(spec, Path(directory))
        tracking: Timed | None = None
        if condition.startswith("sender"):
            every = spec.mlflow_log_every if condition == "sender, auto" else 1
            tracked = {**spec.resolved, "output": {"mlflow": {"tracking_uri": uri, "log_every": every}}}
            tracking = Timed(MlflowLogger(Path(directory), tracked, resumed=False))
        elif condition.startswith("async"):
            tracking = Timed(AsyncMlflow(uri, batched=condition == "async, batched"))
        if tracking is not None:
            sinks.append(tracking)
        _feed(build_session(spec), sinks)
        seconds = time.perf_counter() - start
    return seconds, tracking.seconds if tracking else 0.0, time.process_time() - cpu


def mlflow_start_up(uri: str) -> float:
    """Seconds for a fresh interpreter to import MLflow and open the store: what the asynchronous
    conditions would add to a run of their own (this process imported MLflow once, beforehand)."""
    started = time.perf_counter()
    code = f"from mlflow import MlflowClient; MlflowClient({uri!r}).search_experiments()"
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)
    bare = time.perf_counter() - started
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", "pass"], check=True, capture_output=True)
    return bare - (time.perf_counter() - started)


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def sender_cpu(spec: RunSpec, uri: str) -> float:
    """The sending process's CPU seconds for one run of `spec`."""
    before = children_cpu()
    timed_run(spec, uri, "sender")
    return children_cpu() - before


CONDITIONS = ("none", "sender", "sender, auto", "async, a call a step", "async, batched")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--minutes", type=float, default=0.0)
    arguments = parser.parse_args()
    spec = guide_spec(arguments.steps)
    with tempfile.TemporaryDirectory() as store:
        uri = f"sqlite:///{store}/mlflow.db"
        timed_run(guide_spec(50), uri, "sender")  # (the store's tables made once, as a server has them)
        timed_run(guide_spec(50), uri, "async, batched")  # (and MLflow imported in this process)
        results: dict[str, list[tuple[float, float, float]]] = {name: [] for name in CONDITIONS}
        children: list[float] = []
        for _ in range(arguments.rounds):
            for name in CONDITIONS:
                before = children_cpu()
                results[name].append(timed_run(spec, uri, name))
                if name == "sender":
                    children.append(children_cpu() - before)
        start_up = statistics.median(sender_cpu(guide_spec(10), uri) for _ in range(3))
        imported = statistics.median(mlflow_start_up(uri) for _ in range(3))
        long = None
        if arguments.minutes:
            speed = arguments.steps / statistics.median(seconds for seconds, _, _ in results["none"])
            long_steps = int(speed * arguments.minutes * 60)
            long_spec = guide_spec(long_steps, epochs=long_steps // 20 + 1)  # (20 steps an epoch)
            before = children_cpu()
            long = (
                long_spec.total_steps,
                timed_run(long_spec, uri, "none")[0],
                timed_run(long_spec, uri, "sender, auto"),
                children_cpu() - before,
            )
    steps = spec.total_steps
    none = statistics.median(seconds for seconds, _, _ in results["none"])
    print(f"{steps}-step runs, {arguments.rounds} interleaved rounds (medians), a SQLite store:")
    for name in CONDITIONS:
        seconds = statistics.median(run[0] for run in results[name])
        handle = statistics.median(run[1] for run in results[name])
        cpu = statistics.median(run[2] for run in results[name])
        print(
            f"  {name + ':':22s} {seconds:7.2f} s  speed {none / seconds:.3f} of none;"
            f"  in the sink's handle {handle:5.2f} s ({handle / seconds:.1%});  this process's CPU {cpu:6.2f} s"
        )
    print(
        f"  (the async conditions' MLflow was imported beforehand: in a run of their own, importing it and "
        f"opening the store adds {imported:.2f} s to the training process)"
    )
    values = 3 * steps
    sending = statistics.median(children)
    print(
        f"the sender's CPU: {sending:.2f} s a {steps}-step run; {start_up:.2f} s for a 10-step run (its start-up)"
    )
    print(f"  per value beyond its start-up: {(sending - start_up) / values * 1e3:.3f} ms ({values} values)")
    if long is not None:
        _, long_none, (long_sender, long_handle, _), long_children = long
        print(
            f"a run of {long_steps} steps (about {arguments.minutes:g} minutes): none {long_none:.1f} s, sender "
            f"(log_every auto: {long_spec.mlflow_log_every}) {long_sender:.1f} s, speed {long_none / long_sender:.3f}"
            f" of none; in the sink's handle "
            f"{long_handle:.2f} s; the sender's CPU {long_children:.1f} s"
        )


if __name__ == "__main__":
    main()
