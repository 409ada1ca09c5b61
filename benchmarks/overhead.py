"""optcli's training loop with its sinks against hand-written PyTorch loops doing the same work.

The guide's SimpleNN (784-128-10), Adam, StepLR, clip_grad_norm_, batch 64, a metrics.csv row every
step. Three loops run interleaved in one process, so that machine noise hits all alike: the plain
loop (batches indexed from tensors, as optcli does), optcli's, and the plain loop fed by
DataLoader(TensorDataset(...)) as most PyTorch code is written. The figures are ratios of total steps per second. Then,
in rounds of their own, optcli's loop against itself writing TensorBoard's event files too
(`output.tensorboard: true`). Last, in rounds of their own, a Dataset of one's own (the same data,
one sample per `__getitem__`): optcli's loop against the hand-written loop over the same DataLoader,
and against that loop over a plain `DataLoader(dataset, shuffle=True)`. (MLflow's cost, on the
same run: benchmarks/mlflow_cost.py.)

    python benchmarks/overhead.py [--steps 2000] [--rounds 10]
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

from optcli.config.loading import RawConfig
from optcli.config.resolve import resolve_config
from optcli.config.spec import RunSpec
from optcli.train.loop import run_training
from optcli.train.session import Session, build_session
from optcli.train.sinks import RunOutcome
from optcli.train.sinks.csv_files import CsvWriter
from optcli.train.sinks.display import PlainDisplay
from optcli.train.sinks.summary import SummaryWriter

HERE = Path(__file__).resolve().parent
GUIDE_DATA = {"name": "random", "samples": 1280, "features": 784, "classes": 10, "batch_size": 64}
# The same data as a Dataset of one's own: optcli batches it through its seeded DataLoader.
USER_DATA = {"name": "guide_samples.py:GuideSamples", "batch_size": 64}
DEVNULL = open(os.devnull, "w")  # noqa: SIM115  (where the plain display writes, for the benchmark's life)


def guide_spec(steps: int, data: dict[str, Any] = GUIDE_DATA, device: str = "cpu", **train: Any) -> RunSpec:
    config = {
        "seed": 0,
        "device": device,
        "model": {"name": "mlp", "hidden": [128]},
        "data": data,
        "optimizer": {"name": "adam", "lr": 1e-3},
        "scheduler": {"name": "step_lr", "step_size": 5, "gamma": 0.1},
        "clip": {"max_norm": 1.0},
        "train": {"epochs": 10_000, "max_steps": steps, "log_every": 1, **train},
    }
    return resolve_config(RawConfig(config, HERE, "overhead"))


def time_optcli(spec: RunSpec, tensorboard: bool = False) -> float:
    """Seconds for optcli's loop with the sinks `optcli train` uses (CSV files, summary, plain display,
    and TensorBoard's event files when asked)."""
    session = build_session(spec)
    with tempfile.TemporaryDirectory() as directory:
        sinks = _file_sinks(spec, Path(directory), tensorboard)
        start = time.perf_counter()
        _feed(session, sinks)
        return time.perf_counter() - start


def _file_sinks(spec: RunSpec, run_dir: Path, tensorboard: bool = False) -> list[Any]:
    sinks: list[Any] = [CsvWriter(run_dir), SummaryWriter(run_dir, {}), PlainDisplay(DEVNULL)]
    if tensorboard:
        from optcli.train.sinks.tensorboard import TensorBoardWriter

        sinks.append(TensorBoardWriter(run_dir, spec))
    return sinks


def _feed(session: Session, sinks: list[Any]) -> None:
    for record in run_training(session):
        for sink in sinks:
            sink.handle(record)
    for sink in sinks:
        sink.close(RunOutcome("completed"))


def time_plain(spec: RunSpec) -> float:
    """Seconds for the loop a user would write: the same model, data order, optimizer and schedule."""
    session = build_session(spec)  # the same weights and data, built the same way, not timed
    return _hand_written_loop(session, session.batches.epoch, spec.total_steps)


def time_dataloader(spec: RunSpec) -> float:
    """Seconds for the same loop fed the way most PyTorch code is: DataLoader(TensorDataset(...))."""
    from torch.utils.data import DataLoader, TensorDataset

    session = build_session(spec)
    loader = DataLoader(
        TensorDataset(session.batches.inputs, session.batches.targets),
        batch_size=64,
        shuffle=True,
        generator=torch.Generator().manual_seed(0),
    )
    return _hand_written_loop(session, lambda: iter(loader), spec.total_steps)


def time_same_loader(spec: RunSpec) -> float:
    """A user's Dataset: the hand-written loop over the very DataLoader optcli builds for it
    (`optcli.data.loader.make_loader`, seeded per batch)."""
    session = build_session(spec)
    loader = session.batches.loader  # type: ignore[attr-defined]
    return _hand_written_loop(session, lambda: iter(loader), spec.total_steps)


def time_plain_loader(spec: RunSpec) -> float:
    """A user's Dataset in the loader most code writes: DataLoader(dataset, shuffle=True), no per-batch
    seeding (so not repeatable across num_workers): what optcli's seeding costs."""
    from torch.utils.data import DataLoader

    session = build_session(spec)
    dataset = session.batches.loader.dataset.dataset  # type: ignore[attr-defined]  # inside SeededSamples
    loader = DataLoader(dataset, batch_size=64, shuffle=True, generator=torch.Generator().manual_seed(0))
    return _hand_written_loop(session, lambda: iter(loader), spec.total_steps)


def _hand_written_loop(session: Session, epoch_batches: Callable[[], Iterator[Any]], steps: int) -> float:
    """The guide's loop, as a user writes it, with .item() for the loss and norm every step."""
    model, optimizer = session.model, session.optimizer
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=5, gamma=0.1)
    criterion = nn.CrossEntropyLoss()
    losses, norms = [], []
    step = 0
    start = time.perf_counter()
    while step < steps:
        for inputs, labels in epoch_batches():
            optimizer.zero_grad(set_to_none=True)
            loss = criterion(model(inputs), labels)
            loss.backward()
            norms.append(nn.utils.clip_grad_norm_(model.parameters(), max_norm=1.0).item())
            optimizer.step()
            losses.append(loss.item())
            step += 1
            if step == steps:
                break
        scheduler.step()
    return time.perf_counter() - start


def interleaved(loops: dict[str, Callable[[RunSpec], float]], spec: RunSpec, rounds: int) -> dict[str, float]:
    """Each loop's total seconds over `rounds` rounds, the order alternating (ABC, CBA, ...) so that a
    drift in machine speed favours none of them."""
    for loop in loops.values():
        loop(spec)  # warm-up: first-call costs are nobody's overhead
    totals = dict.fromkeys(loops, 0.0)
    for round_number in range(1, rounds + 1):
        order = list(loops) if round_number % 2 else list(reversed(loops))
        seconds = {name: loops[name](spec) for name in order}
        for name, value in seconds.items():
            totals[name] += value
        rates = "   ".join(f"{name} {spec.total_steps / seconds[name]:8.1f} steps/s" for name in loops)
        print(f"round {round_number}: {rates}", file=sys.stderr)
    return totals


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=10)
    arguments = parser.parse_args()
    spec = guide_spec(arguments.steps)
    # Two measurements of their own: a fourth loop writing event files in the same rounds disturbed
    # the others' ratio by several percent on two cores.
    totals = interleaved(
        {"plain": time_plain, "optcli": time_optcli, "dataloader": time_dataloader}, spec, arguments.rounds
    )
    board = interleaved(
        {"optcli": time_optcli, "tensorboard": functools.partial(time_optcli, tensorboard=True)},
        spec,
        arguments.rounds,
    )
    user = interleaved(
        {"same_loader": time_same_loader, "optcli": time_optcli, "plain_loader": time_plain_loader},
        guide_spec(arguments.steps, USER_DATA),
        arguments.rounds,
    )
    steps = spec.total_steps * arguments.rounds
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {steps} steps per loop")
    for name, total in totals.items():
        print(f"{name + ':':12s}{steps / total:8.1f} steps/s")
    print(f"ratio optcli/plain:      {totals['plain'] / totals['optcli']:.3f}")
    print(f"ratio optcli/dataloader: {totals['dataloader'] / totals['optcli']:.3f}")
    print(f"ratio optcli+tensorboard/optcli (measured apart): {board['optcli'] / board['tensorboard']:.3f}")
    print("a Dataset of one's own, through DataLoaders (measured apart):")
    for name, total in user.items():
        print(f"  {name + ':':14s}{steps / total:8.1f} steps/s")
    print(f"  ratio optcli/same_loader:       {user['same_loader'] / user['optcli']:.3f}")
    print(f"  ratio same_loader/plain_loader: {user['plain_loader'] / user['same_loader']:.3f}")


if __name__ == "__main__":
    main()
