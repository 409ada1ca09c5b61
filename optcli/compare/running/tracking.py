"""A comparison in MLflow (its arms' `output.mlflow`): a parent run for the comparison (or the suite),
and one nested child run per arm and seed and per tuning trial, each logged by the run itself,
wherever it trains (a worker process, a Ray task), tagged `arm`, `seed`, `phase` (tune or final)
and, in a suite, `workload`. At the end the parent gets the verdict as a tag, each arm's mean of the
ranking metric, and the comparison's summary and figures as artifacts.

The parent is made here, in the comparison's own process, before any run starts; a tracking server
that cannot be reached is warned about once and the comparison goes on (the runs then each warn, and
`optcli mlflow-sync COMPARE_DIR` uploads everything later).
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from optcli.compare.running.jobs import TRIALS, Job, placed_run
from optcli.errors import ConfigError
from optcli.train.run_files import check_run_files
from optcli.train.rundir import write_atomically
from optcli.train.sinks.mlflow_logging import (
    STATE_FILE,
    MlflowLogger,
    Tracking,
    read_rows,
    read_state,
    replay,
    resolve_tracking_uri,
)
from optcli.train.sinks.mlflow_sender import read_json

PARENT_ARTIFACTS = (
    "summary.json",
    "suite.json",
    "workloads.csv",
    "curves.png",
    "sensitivity.png",
    "profile.png",
)


def settings_of(spec: Any) -> dict[str, Any] | None:
    """An arm's output.mlflow, as config.yaml records it (None: not tracked)."""
    mlflow = spec.resolved.get("output", {}).get("mlflow") if spec is not None else None
    return mlflow if isinstance(mlflow, dict) else None


class ParentRun:
    """The comparison's MLflow run: opened once, its id kept in the comparison's mlflow.json (so that
    --resume goes on with the same one), closed with the verdict."""

    def __init__(
        self, directory: Path, settings: dict[str, Any], name: str, tracking_uri: str | None = None
    ) -> None:
        self.directory = directory
        self.uri = resolve_tracking_uri(tracking_uri, settings)
        self.client: Any = None
        self.run_id: str | None = None
        self.experiment = settings.get("experiment") or name
        state = read_state(directory)
        try:
            from optcli.train.sinks.mlflow_sender import client, experiment_named

            self.client = client(self.uri)
            if state.get("run_id") and state.get("tracking_uri") == self.uri:
                self.run_id = state["run_id"]
                self.client.update_run(self.run_id, status="RUNNING")
            else:
                experiment_id = experiment_named(self.client, self.uri, self.experiment)
                tags = {
                    "mlflow.runName": settings.get("run_name") or directory.name,
                    "optcli.comparison": name,
                }
                self.run_id = self.client.create_run(experiment_id, tags=tags).info.run_id
                self._save(False)
        except Exception as error:
            self._warn(error)

    def child(self, tags: dict[str, str]) -> Tracking:
        return Tracking(self.run_id, tags, self.experiment)

    def close(self, verdict: str | None, values: dict[str, float], status: str) -> None:
        """`values`: the comparison's numbers per arm, named as they are logged (`adam.mean`)."""
        if self.client is None or self.run_id is None:
            return
        from mlflow.entities import Metric, RunTag

        try:
            tags = [RunTag("verdict", verdict[:5000])] if verdict else []
            metrics = [Metric(name, value, 0, 0) for name, value in values.items()]
            self.client.log_batch(self.run_id, metrics=metrics, tags=tags)
            for name in PARENT_ARTIFACTS:
                if (self.directory / name).is_file():
                    self.client.log_artifact(self.run_id, str(self.directory / name))
            self.client.set_terminated(self.run_id, status)
            self._save(status == "FINISHED")
        except Exception as error:
            self._warn(error)

    def _save(self, complete: bool) -> None:
        state = {"tracking_uri": self.uri, "run_id": self.run_id, "complete": complete}
        write_atomically(self.directory / STATE_FILE, json.dumps(state, indent=2) + "\n")

    def _warn(self, error: Exception) -> None:
        self.client = None
        print(
            f"warning: MLflow at {self.uri or 'the default tracking URI'} did not take the comparison "
            f"({type(error).__name__}: {error}); it goes on, its files are the record: optcli mlflow-sync "
            f"{self.directory} uploads it later",
            file=sys.stderr,
        )


def parent_metrics(
    means: dict[str, float | None], scores: dict[str, float] | None = None
) -> dict[str, float]:
    """The parent run's numbers per arm: its mean of the ranking metric (`adam.mean`) and, in a suite,
    its profile score (`adam.score`)."""
    values = {f"{arm}.mean": mean for arm, mean in means.items() if mean is not None}
    return values | {f"{arm}.score": score for arm, score in (scores or {}).items()}


def tracked_jobs(jobs: list[Job], parent: ParentRun | None, workload: str | None = None) -> list[Job]:
    """Each job with its place under the parent: tagged arm, seed, phase and workload."""
    if parent is None or parent.run_id is None:
        return jobs
    return [
        replace(job, tracking=parent.child(job_tags(job.arm, job.seed, job.trial, workload))) for job in jobs
    ]


def job_tags(arm: str, seed: int, trial: int | None, workload: str | None) -> dict[str, str]:
    tags = {"arm": arm, "seed": str(seed), "phase": "tune" if trial is not None else "final"}
    if trial is not None:
        tags["trial"] = str(trial)
    if workload is not None:
        tags["workload"] = workload
    return tags


@dataclass(frozen=True)
class Synced:
    """What `optcli mlflow-sync` did with one run (or with the comparison itself)."""

    what: str  # the run's folder, or "the comparison"
    uploaded: bool  # sent now, or already in MLflow
    said: str  # what happened, in words

    def __str__(self) -> str:
        return f"{self.what}: {self.said}"


def sync_directory(directory: Path, tracking_uri: str | None) -> list[Synced]:
    """`optcli mlflow-sync`: a run directory, or a comparison's (a suite's) with its runs, uploaded
    from their files as live logging would have sent them. What was done, one per run."""
    if (directory / "config.yaml").is_file():
        return [sync_run(directory, tracking_uri, None)]
    summary_file = (
        directory / "suite.json" if (directory / "suite.json").is_file() else directory / "summary.json"
    )
    settings = _settings_of_any_run(directory)
    name = (
        json.loads(summary_file.read_text()).get("name", directory.name)
        if summary_file.is_file()
        else directory.name
    )
    parent = ParentRun(directory, settings, str(name), tracking_uri)
    if parent.run_id is None:
        return [Synced("the comparison", False, "could not be uploaded (see the warning)")]
    done = []
    for run_dir in sorted(path.parent for path in directory.glob("**/config.yaml")):
        relative = run_dir.relative_to(directory)
        workload = relative.parts[0] if len(relative.parts) > 1 and relative.parts[0] != TRIALS else None
        arm, seed, trial = placed_run(run_dir.name)
        done.append(sync_run(run_dir, tracking_uri, parent.child(job_tags(arm, seed, trial, workload))))
    summary = json.loads(summary_file.read_text()) if summary_file.is_file() else {}
    means = {arm["arm"]: arm.get("mean") for arm in summary.get("arms", [])}
    status = "FINISHED" if summary.get("status", "completed") == "completed" else "KILLED"
    parent.close(summary.get("verdict"), parent_metrics(means, summary.get("scores")), status)
    return done


def sync_run(run_dir: Path, tracking_uri: str | None, tracking: Tracking | None) -> Synced:
    import yaml

    state = read_state(run_dir)
    uri = tracking_uri or state.get("tracking_uri")
    if state.get("complete") and state.get("tracking_uri") == resolve_tracking_uri(uri, {}):
        return Synced(str(run_dir), True, f"already in MLflow (run {state.get('run_id')})")
    resolved = yaml.safe_load((run_dir / "config.yaml").read_text())
    try:  # (what live logging sent came from the run itself: its files, edited or cut, are checked)
        check_run_files(run_dir, read_json(run_dir / "summary.json"))
        rows = read_rows(run_dir)
    except ConfigError as error:
        return Synced(str(run_dir), False, f"not uploaded ({'; '.join(error.problems)})")
    logger = MlflowLogger(
        run_dir, resolved, resumed=True, tracking=tracking, tracking_uri=uri, in_process=True
    )
    replay(run_dir, logger, rows)
    if logger.failure is not None:
        return Synced(str(run_dir), False, f"not uploaded ({logger.failure})")
    return Synced(str(run_dir), True, f"uploaded (run {logger.run_id})")


def _settings_of_any_run(directory: Path) -> dict[str, Any]:
    import yaml

    for config in sorted(directory.glob("**/config.yaml")):
        values = yaml.safe_load(config.read_text())
        mlflow = (values.get("output") or {}).get("mlflow")
        if isinstance(mlflow, dict):
            return mlflow
    return {}
