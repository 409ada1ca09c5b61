"""Data-parallel training on torch.distributed: the process group torchrun's environment describes,
the decisions every rank must take together, and the launch of N local processes (`--nproc`) through
torch's own launcher (`torch.distributed.run`, the elastic agent), not a loop of subprocesses.

Every rank builds the same model from the same seed and draws the same global order of batches; each
takes its share of every global batch (`data.batch_size` is the global batch), DistributedDataParallel
averages the gradients, and so the same config gives the same trajectory at any number of processes,
up to the rounding of the all-reduce. Only rank 0 writes files and draws the table.
"""

from __future__ import annotations

import os
import signal
import socket
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0
    restart: int = 0  # how many times torchrun restarted the group (elastic fault tolerance)
    run_id: str = ""  # torchrun's rendezvous id: the same across restarts of one launch

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        """Several processes train together (one process under torchrun trains alone)."""
        return self.size > 1

    @property
    def launched(self) -> bool:
        """Started by torchrun (or --nproc), which may restart it."""
        return bool(self.run_id)


ALONE = World()  # one process, not launched by torchrun
_JOINED: list[bool] = []  # whether this process joined a process group (see joined_a_group)


def world_from_environment() -> World:
    """What torchrun tells each worker in its environment; a lone process otherwise."""
    environment = os.environ
    if "TORCHELASTIC_RUN_ID" not in environment and "WORLD_SIZE" not in environment:
        return ALONE
    return World(
        int(environment.get("RANK", 0)),
        int(environment.get("WORLD_SIZE", 1)),
        int(environment.get("LOCAL_RANK", 0)),
        int(environment.get("TORCHELASTIC_RESTART_COUNT", 0)),
        environment.get("TORCHELASTIC_RUN_ID", ""),
    )


def device_of(world: World, configured: str) -> str:
    """One GPU per local rank on CUDA; the CPU is shared."""
    if world.active and configured.startswith("cuda"):
        return f"cuda:{world.local_rank}"
    return configured


def join(world: World, device: str) -> None:
    """Join the process group: nccl between GPUs, gloo on the CPU."""
    if not world.active or dist.is_initialized():
        return
    if device.startswith("cuda"):
        torch.cuda.set_device(torch.device(device))
    from torch.distributed.rendezvous import rendezvous

    # The store torchrun's environment names, its keys kept apart for each restart of the group: a
    # restarted group otherwise finds the dead workers' addresses there and cannot connect.
    store, rank, size = next(rendezvous("env://"))
    attempt_store = dist.PrefixStore(f"optcli/restart_{world.restart}", store)
    dist.init_process_group(
        "nccl" if device.startswith("cuda") else "gloo", store=attempt_store, rank=rank, world_size=size
    )
    _JOINED.append(True)


def leave() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def joined_a_group() -> bool:
    """Whether this process joined a process group: then it must end without the interpreter's
    teardown (cli.main). There, the DistributedDataParallel model that an exception's traceback kept
    alive is freed with the process group's last reference, and gloo's destructor joins its threads
    while holding the GIL that one of them is waiting for: the worker hung forever after a stop (torch
    2.13, about one launcher kill in eight on the development machine; py-spy showed both stacks)."""
    return bool(_JOINED)


def agree(world: World, local: bool) -> bool:
    """Whether any rank says yes (a stop request): every rank gets the same answer."""
    if not world.active:
        return local
    flag = torch.tensor([int(local)], device=_collective_device())
    dist.all_reduce(flag, op=dist.ReduceOp.MAX)
    return bool(flag.item())


def share(world: World, value: Any) -> Any:
    """Rank 0's value, on every rank (a run directory, say)."""
    if not world.active:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def barrier(world: World) -> None:
    if world.active:
        dist.barrier()


def sum_across(world: World, tensor: torch.Tensor) -> torch.Tensor:
    """The sum of a tensor over the ranks (asynchronous on a GPU: no host sync)."""
    if world.active:
        dist.all_reduce(tensor)
    return tensor


def _collective_device() -> torch.device:
    backend = dist.get_backend()
    return torch.device("cuda", torch.cuda.current_device()) if backend == "nccl" else torch.device("cpu")


def free_port() -> int:
    """A free TCP port on the loopback interface, for a local launch's rendezvous."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


# Set by `--nproc`'s launcher for its workers: they stop (with a checkpoint) when it dies.
LAUNCHER_PID = "OPTCLI_LAUNCHER_PID"


def launch(processes: int, max_restarts: int, command: list[str], run_id: str) -> None:
    """`--nproc N`: N workers of `python -m optcli <command>` on this machine, through torch's elastic
    launcher, which restarts them all (up to `max_restarts` times) when one dies. The rendezvous and
    gloo listen on the loopback interface only. Raises ChildFailedError when the run fails."""
    from torch.distributed.run import get_args_parser, run

    os.environ[LAUNCHER_PID] = str(os.getpid())
    if os.uname().sysname == "Linux":
        os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
    # The cores shared out among the workers (torchrun would give each one thread, and say so).
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // processes)))
    arguments = get_args_parser().parse_args(
        [
            "--nnodes=1",
            f"--nproc-per-node={processes}",
            f"--max-restarts={max_restarts}",
            "--rdzv-backend=c10d",
            f"--rdzv-endpoint=127.0.0.1:{free_port()}",
            f"--rdzv-id={run_id}",
            "--local-addr=127.0.0.1",
            "--monitor-interval=0.5",
            "--module",
            "optcli",
            *command,
        ]
    )
    run(arguments)


def run_pointer(output_dir: Path, name: str, run_id: str) -> Path:
    """Where rank 0 notes the run directory of a torchrun launch, so that a restarted group resumes
    in it (the launch's rendezvous id stays the same across restarts)."""
    return output_dir / name / f".torchrun-{run_id}"


def new_run_id() -> str:
    return str(uuid.uuid4())


def stop_with_launcher() -> None:
    """A worker of `--nproc`'s launcher: SIGTERM to itself when the launcher dies (killed outright,
    say), so that every rank stops at the same step with a checkpoint instead of training on alone
    beside a resume. (torchrun starts its workers in sessions of their own, so nothing else ends them.)"""
    launcher = os.environ.get(LAUNCHER_PID)
    if launcher is None or launcher != str(os.getppid()):
        return

    def watch() -> None:
        while os.getppid() == int(launcher):
            time.sleep(0.25)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="optcli-launcher-watch", daemon=True).start()
