"""`compare --executor ray`: every run a Ray task on the cluster `ray.init` finds (`--address auto` or
`ray://HOST:10001`), or on a local Ray instance on the loopback interface when no address is given.

It offers the local WorkerPool's interface (`run(jobs, on_message)`, `close()`), so a comparison does
not know which ran it. Progress records reach the driver through a Ray queue. A run's files travel
back with its result, so they end up under the driver's folder whether or not the cluster shares a
file system; where it does (a local instance, or a shared folder) a run writes there directly, and a
retried task then resumes from the run's last checkpoint. Ctrl-C cancels the tasks.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import shutil
import tarfile
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

from optcli.errors import ConfigError
from optcli.extras import needs
from optcli.workers.job_runner import WorkerMessage

RETRIES = 2  # a task whose node died runs again, this many times at most
_STOP_GRACE_S = 3.0  # after Ctrl-C, for the tasks it reached to stop on their own


def start_ray(address: str | None, cpus_per_run: float, gpus_per_run: float) -> RayPool:
    try:
        import ray
    except ImportError:
        raise ConfigError(f"--executor ray {needs('ray')}") from None
    # Ray's own logging stays off the terminal (the comparison's display says what matters).
    quiet: dict[str, Any] = {
        "log_to_driver": False,
        "configure_logging": False,
        "logging_level": logging.ERROR,
    }
    if address is None:  # a local instance of this machine's cores, listening on the loopback interface
        # "local": a new instance, never the one a `ray start` on this machine left running (which
        # ray.init would otherwise join, or wait for in vain when it was killed).
        ray.init(address="local", include_dashboard=False, _node_ip_address="127.0.0.1", **quiet)
    else:
        ray.init(address=address, **quiet)
    return RayPool(cpus_per_run, gpus_per_run)


class RayPool:
    def __init__(self, cpus_per_run: float, gpus_per_run: float) -> None:
        import ray
        from ray.util.queue import Queue

        self.progress = Queue()
        self.task = ray.remote(_run_remote).options(
            num_cpus=cpus_per_run, num_gpus=gpus_per_run, max_retries=RETRIES, retry_exceptions=False
        )
        self.threads = max(1, int(cpus_per_run))
        self.size = _runs_at_a_time(ray.cluster_resources(), cpus_per_run, gpus_per_run)

    def run(self, jobs: list[Any], on_message: Any) -> None:
        import ray

        running = {self.task.remote(job, _packed(job), self.progress, self.threads): job for job in jobs}
        try:
            while running:
                done, _ = ray.wait(list(running), num_returns=1, timeout=0.2)
                self._pass_progress(on_message)
                for reference in done:
                    job = running.pop(reference)
                    outcome, files = self._result(reference, job)
                    _unpack(files, job.run_dir)
                    on_message(WorkerMessage(job.index, "done", outcome))
        except KeyboardInterrupt:
            for reference in _stop(list(running)):  # the files of the runs that stopped travel back too
                job = running.pop(reference)
                with contextlib.suppress(Exception):  # cancelled before it began, or its node gone
                    outcome, files = ray.get(reference)
                    _unpack(files, job.run_dir)
                    on_message(WorkerMessage(job.index, "done", outcome))
            raise
        finally:
            self._pass_progress(on_message)

    def _result(self, reference: Any, job: Any) -> tuple[Any, bytes]:
        """A task's outcome and files. A task that Ray could not run to its end is a failed run, or
        an interruption when a Ctrl-C reached it (a terminal's reaches the Ray processes too)."""
        import ray

        from optcli.compare.running.jobs import JobOutcome

        try:
            return ray.get(reference)  # type: ignore[no-any-return]
        except ray.exceptions.RayError as error:
            if isinstance(error, ray.exceptions.TaskCancelledError) or "KeyboardInterrupt" in str(error):
                raise KeyboardInterrupt from None
            return JobOutcome(job.index, "failed", f"{type(error).__name__}: {str(error)[:500]}"), b""

    def _pass_progress(self, on_message: Any) -> None:
        while True:
            try:
                index, record = self.progress.get_nowait()
            except Exception:  # empty; or the queue's actor gone, as a Ctrl-C to the Ray processes ends it
                return
            on_message(WorkerMessage(index, "record", record))

    def close(self) -> None:
        import ray

        ray.shutdown()


def _stop(running: list[Any]) -> list[Any]:
    """Stop the tasks under way, each run with a checkpoint; return those that ended. A terminal's
    Ctrl-C reaches a local instance's tasks too, and they stop on their own; ray.cancel (a
    KeyboardInterrupt inside the task) is for the others, another machine's. They get a moment first:
    cancelling a task just as it completes can crash Ray's driver ("Tried to complete task that was
    not pending", ray-project/ray issue 54846)."""
    import ray

    if not running:
        return []
    ended, pending = ray.wait(running, num_returns=len(running), timeout=_STOP_GRACE_S)
    for reference in pending:
        ray.cancel(reference)
    if pending:
        ended += ray.wait(pending, num_returns=len(pending), timeout=30)[0]
    return ended


def _runs_at_a_time(resources: dict[str, float], cpus_per_run: float, gpus_per_run: float) -> int:
    """How many runs the cluster has room for at once (as it is now: it may grow)."""
    room = [resources.get("CPU", 0.0) / cpus_per_run] if cpus_per_run else []
    room += [resources.get("GPU", 0.0) / gpus_per_run] if gpus_per_run else []
    return max(1, int(min(room, default=1)))


def _packed(job: Any) -> bytes:
    """A run's folder as it stands (its checkpoint, when resuming), for a node that cannot see it."""
    if not job.resume or not job.run_dir.is_dir():
        return b""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        archive.add(job.run_dir, arcname=".")
    return buffer.getvalue()


def _unpack(files: bytes, run_dir: Path) -> None:
    if not files:
        return  # written in place: the file system is shared
    if run_dir.exists():
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True)
    with tarfile.open(fileobj=io.BytesIO(files), mode="r:gz") as archive:
        archive.extractall(run_dir, filter="data")


def _sees_driver_folder(run_dir: Path) -> bool:
    """Whether this node sees the comparison's folder (its comparison.json), and may write in it."""
    for folder in (run_dir.parent, run_dir.parent.parent):
        if (folder / "comparison.json").is_file():
            return os.access(folder, os.W_OK)
    return False


def _run_remote(job: Any, packed: bytes, progress: Any, threads: int) -> tuple[Any, bytes]:
    """On a Ray worker: the run, in the driver's folder when this node sees it, else in a temporary
    one whose files go back with the outcome."""
    import ray
    import torch

    from optcli.compare.running.jobs import run_job
    from optcli.errors import CANCELLATIONS

    torch.set_num_threads(threads)
    if ray.exceptions.TaskCancelledError not in CANCELLATIONS:  # a cancelled run ends interrupted
        CANCELLATIONS.append(ray.exceptions.TaskCancelledError)
    if _sees_driver_folder(job.run_dir):
        job = replace(job, resume=True)  # a retried task goes on from the run's checkpoint
        return run_job(job, lambda record: progress.put((job.index, record))), b""
    with tempfile.TemporaryDirectory() as scratch:
        local = Path(scratch) / job.run_dir.name
        if packed:
            _unpack(packed, local)
        outcome = run_job(replace(job, run_dir=local), lambda record: progress.put((job.index, record)))
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
            if local.is_dir():
                archive.add(local, arcname=".")
        return outcome, buffer.getvalue()
