"""The MLflow client's side of `output.mlflow`: a process of its own (`python -m
optcli.train.sinks.mlflow_sender`) that takes a run's batches as JSON lines on its standard input and sends
each with MLflow's `log_batch`, so that neither the store's work nor a slow server ever holds the
training loop (the client's SQLAlchemy and HTTP code run under a lock of their own, not the loop's
interpreter). `optcli mlflow-sync` uses the same Sender in its own process.

The first line says which run (the arguments of `Sender`); then one item a line: `params`,
`metrics` (key, value, step, timestamp in ms), `finish` (the status). The MLflow run's id and the last
step it holds are kept in `<run>/mlflow.json` as they reach the server. The first failure is warned
about, once, on standard error; everything after it is read and dropped (the files are the record).
"""

from __future__ import annotations

import json
import logging
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from optcli import __version__
from optcli.train.rundir import write_atomically

STATE_FILE = "mlflow.json"
BATCH = 1000  # MLflow's limit of metrics per log_batch
PARAMS_BATCH = 100  # and of parameters
GATHER_S = 0.5  # metrics arriving within this long of one another go to the store together (gathered)
_NOTHING_YET: dict[str, Any] = {"kind": "nothing yet"}


class Sender:
    def __init__(
        self,
        run_dir: str,
        uri: str | None,
        experiment: str,
        run_name: str,
        device: str,
        tags: dict[str, str],
        parent_run_id: str | None,
        run_id: str | None,
        logged_step: int,
    ) -> None:
        self.run_dir, self.uri = Path(run_dir), uri
        self.experiment, self.run_name, self.device = experiment, run_name, device
        self.tags, self.parent_run_id = tags, parent_run_id
        self.run_id, self.logged_step = run_id, logged_step
        self.client: Any = None
        self.failure: str | None = None

    def open(self) -> None:
        """The client and the MLflow run. The sending process does this as soon as it starts, so that
        its seconds of importing MLflow and opening the store overlap the session's build, not the
        training loop."""
        if self.client is None and self.failure is None:
            self._attempt(self._open)

    def send(self, item: dict[str, Any]) -> None:
        self.open()
        if self.failure is None:  # (else dropped: the files are the record, mlflow-sync uploads them later)
            self._attempt(getattr(self, f"_{item['kind']}"), item)

    def _attempt(self, action: Any, *arguments: Any) -> None:
        try:
            action(*arguments)
        except Exception as error:
            self._warn(f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}")

    def _open(self) -> None:
        """The MLflow run: the one a resumed run's mlflow.json names, or a new one in the experiment."""
        self.client = client(self.uri)
        if self.run_id is not None:
            self.client.update_run(self.run_id, status="RUNNING")
            return
        experiment_id = experiment_named(self.client, self.uri, self.experiment)
        tags = {
            "mlflow.runName": self.run_name,
            "optcli.version": __version__,
            "optcli.run_dir": str(self.run_dir.resolve()),
            "device": self.device,
            **self.tags,
        }
        commit = _git_commit()
        if commit:
            tags["mlflow.source.git.commit"] = commit
        if self.parent_run_id:
            tags["mlflow.parentRunId"] = self.parent_run_id
        self.run_id = self.client.create_run(experiment_id, tags=tags, run_name=self.run_name).info.run_id
        self._save_state()

    def _params(self, item: dict[str, Any]) -> None:
        from mlflow.entities import Param

        params = [Param(key, value) for key, value in item["params"].items()]
        for start in range(0, len(params), PARAMS_BATCH):
            self.client.log_batch(self.run_id, params=params[start : start + PARAMS_BATCH])

    def _metrics(self, item: dict[str, Any]) -> None:
        from mlflow.entities import Metric

        metrics = [Metric(key, value, stamp, step) for key, value, step, stamp in item["metrics"]]
        for start in range(0, len(metrics), BATCH):
            self.client.log_batch(self.run_id, metrics=metrics[start : start + BATCH])
        self.logged_step = max([self.logged_step, *(step for _, _, step, _ in item["metrics"])])
        self._save_state()

    def _finish(self, item: dict[str, Any]) -> None:
        """The final and best values, the artifacts, the status."""
        from mlflow.entities import Metric, RunTag

        summary = read_json(self.run_dir / "summary.json")
        stamp, steps = int(time.time() * 1000), int(summary.get("steps") or 0)
        finals = [
            Metric(key, float(value), stamp, steps)
            for key, value in summary.items()
            if key.startswith(("final_", "best_")) and not key.endswith("_epoch") and _number(value)
        ]
        if finals:
            self.client.log_batch(self.run_id, metrics=finals)
        artifacts = [
            "config.yaml",
            "summary.json",
            "data.json",
            *sorted(p.name for p in self.run_dir.glob("*.png")),
        ]
        for name in artifacts:
            if (self.run_dir / name).is_file():
                self.client.log_artifact(self.run_id, str(self.run_dir / name))
        self.client.log_batch(self.run_id, tags=[RunTag("status", item["status"])])
        self.client.set_terminated(self.run_id, item["status"])
        self._save_state(complete=True)

    def _save_state(self, complete: bool = False) -> None:
        state = {
            "tracking_uri": self.uri,
            "run_id": self.run_id,
            "logged_step": self.logged_step,
            "complete": complete,
        }
        write_atomically(self.run_dir / STATE_FILE, json.dumps(state, indent=2) + "\n")

    def _warn(self, why: str) -> None:
        self.failure = why
        print(
            f"warning: MLflow at {self.uri or 'the default tracking URI'} did not take the run ({why}); the run "
            f"goes on and its files are the record: optcli mlflow-sync {self.run_dir} uploads it later",
            file=sys.stderr,
            flush=True,
        )


def client(uri: str | None) -> Any:
    # A server that is down is found out in seconds, not in MLflow's default minutes of retries.
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
    from mlflow import MlflowClient

    for name in ("mlflow", "alembic"):  # (their notes on creating a store's tables are not the user's)
        logging.getLogger(name).setLevel(logging.WARNING)
    return MlflowClient(tracking_uri=uri)


def experiment_named(mlflow_client: Any, uri: str | None, name: str) -> str:
    """The experiment's id, made when missing. With a SQLite file for a store, its artifacts go beside
    the file (`mlartifacts/<experiment>/`), not into whatever folder the command runs in (MLflow's
    default, `./mlruns`)."""
    found = mlflow_client.get_experiment_by_name(name)
    if found is not None:
        return str(found.experiment_id)
    location = None
    if uri and uri.startswith("sqlite:///") and uri != "sqlite:///:memory:":
        database = Path(uri.removeprefix("sqlite:///"))
        location = (database.resolve().parent / "mlartifacts" / name).as_uri()
    return str(mlflow_client.create_experiment(name, artifact_location=location))


def read_json(path: Path) -> dict[str, Any]:
    try:
        value = json.loads(path.read_text())
        return value if isinstance(value, dict) else {}
    except (OSError, ValueError):
        return {}


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _git_commit() -> str | None:
    """The commit of the git repository the command runs in, if any."""
    try:
        done = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def main() -> None:
    # A terminal's Ctrl-C is the run's to handle: this process ends when the run closes its pipe,
    # after sending what the run handed it (the interrupted status included).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # Training comes first where cores are few: this process takes what the loop leaves, and catches
    # up when the run ends. What it costs on the development machine: about 3 s of CPU to import
    # MLflow and open a SQLite store (done at once, while the run builds its session), then 0.09 ms
    # a value in MLflow's SQL store (0.03 ms over HTTP, the server doing the rest).
    os.nice(10)
    lines = iter(sys.stdin)
    sender = Sender(**json.loads(next(lines)))
    sender.open()
    items: queue.SimpleQueue[dict[str, Any] | None] = queue.SimpleQueue()
    threading.Thread(target=_read, args=(lines, items), name="optcli-mlflow-read", daemon=True).start()
    for item in gathered(items):
        sender.send(item)


def _read(lines: Iterator[str], items: queue.SimpleQueue[dict[str, Any] | None]) -> None:
    """Each line as it comes, then None at the end (the run closed the pipe, or died)."""
    for line in lines:
        items.put(json.loads(line))
    items.put(None)


def gathered(items: queue.SimpleQueue[dict[str, Any] | None]) -> Iterator[dict[str, Any]]:
    """The items in their order, the `metrics` items that arrive within GATHER_S of one another merged
    into one. A run of short epochs hands over a batch at every epoch's end (its values must be on
    their way before the checkpoint that may follow), and one `log_batch` and one state file cost
    about as much for one value as for a thousand: at 20 steps an epoch, batches of a few values
    took a quarter of a core."""
    item = items.get()
    while item is not None:
        if item["kind"] != "metrics":
            yield item
            item = items.get()
            continue
        merged, deadline = list(item["metrics"]), time.monotonic() + GATHER_S
        following: dict[str, Any] | None
        while True:
            try:
                following = items.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                following = _NOTHING_YET  # (none within GATHER_S: wait for the next as usual)
                break
            if following is None or following["kind"] != "metrics":
                break
            merged += following["metrics"]
        yield {"kind": "metrics", "metrics": merged}
        item = items.get() if following is _NOTHING_YET else following


if __name__ == "__main__":
    main()
