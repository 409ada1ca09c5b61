"""One process of a torchrun launch (`optcli train --nproc N`, or `torchrun ... -m optcli train`): it
joins the process group, finds the run to resume when torchrun restarted the group after a worker
died, and trains its share.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

from torch.distributed import DistError

from optcli.config.spec import RunSpec
from optcli.errors import ConfigError, PeerLost, TrainingFailed
from optcli.train.distributed import (
    World,
    barrier,
    device_of,
    join,
    leave,
    run_pointer,
    share,
    stop_with_launcher,
)
from optcli.train.resume import prepare_resume
from optcli.train.run import ResumePoint, TrainedRun, train_run
from optcli.train.rundir import create_run_dir, write_atomically
from optcli.train.sinks import Sink


def check_world(spec: RunSpec, processes: int) -> None:
    """`data.batch_size` is the global batch: it must split evenly among the processes, and so must
    every batch be shared by all of them."""
    if processes <= 1:
        return
    loader = spec.data.loader
    if loader.batch_size % processes:
        raise ConfigError(
            f"data.batch_size: {loader.batch_size} does not divide among {processes} processes (it is the global "
            f"batch: each process takes batch_size / {processes}); choose a multiple of {processes}"
        )
    last = spec.data.train_samples % loader.batch_size
    if not loader.drop_last and 0 < last < processes:
        raise ConfigError(
            f"data.batch_size: the last batch of every epoch holds {last} sample(s), fewer than the {processes} "
            "processes that share it; set data.drop_last: true, or another batch size"
        )


def train_in_world(
    spec: RunSpec,
    world: World,
    displays: Sequence[Sink],
    run_dir: Path | None = None,
    resume: ResumePoint | None = None,
) -> TrainedRun:
    """Train as one of torchrun's workers: rank 0 writes the files and shows `displays`."""
    spec = dataclasses.replace(spec, device=device_of(world, spec.device))
    check_world(spec, world.size)
    stop_with_launcher()
    join(world, spec.device)
    try:
        pointer = None
        if run_dir is None and world.launched:
            spec, run_dir, resume = _this_launchs_run(spec, world)
            pointer = run_pointer(Path(spec.output.dir), spec.name, world.run_id)
        try:
            result = train_run(spec, displays if world.is_main else (), run_dir, resume, world)
        except TrainingFailed as error:
            if _lost_a_peer(error.__cause__):  # a peer died: torchrun restarts the group, or ends it
                raise PeerLost(world.rank) from error
            raise
        if pointer is not None and world.is_main:
            pointer.unlink(missing_ok=True)  # the launch is over: nothing left to restart
        return result
    finally:
        leave()


def _lost_a_peer(error: BaseException | None) -> bool:
    """A collective failed because another process went away: torch's DistError, or gloo's own
    RuntimeError about the connection (which it raises instead, through torch 2.13)."""
    if isinstance(error, DistError):
        return True
    text = str(error)
    return isinstance(error, RuntimeError) and ("gloo" in text or "by peer" in text)


def _this_launchs_run(spec: RunSpec, world: World) -> tuple[RunSpec, Path, ResumePoint | None]:
    """The run directory of this launch, and where to resume in it after a restart (elastic fault
    tolerance: torchrun restarts every worker when one dies; they go on from the last checkpoint)."""
    pointer = run_pointer(Path(spec.output.dir), spec.name, world.run_id)
    found = pointer.read_text().strip() if world.is_main and world.restart > 0 and pointer.is_file() else None
    found = share(world, found)  # rank 0's answer, on every rank
    run_dir = Path(found) if found else None
    if run_dir is not None and (run_dir / "checkpoints" / "last.pt").is_file():
        resumed, point = prepare_resume(run_dir, [], allow_changes=True)
        return dataclasses.replace(resumed, device=spec.device), run_dir, point
    created = create_run_dir(Path(spec.output.dir), spec.name) if world.is_main else None
    if world.is_main:
        assert created is not None
        write_atomically(pointer, f"{created}\n")
    run_dir = Path(share(world, str(created) if created else None))
    barrier(world)
    return spec, run_dir, None
