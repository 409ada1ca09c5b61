"""optcli's training loop with its sinks against the hand-written PyTorch loop doing the same work.

The guide's SimpleNN (784-128-10), Adam, StepLR, clip_grad_norm_, batch 64, a metrics.csv row every
step. The two loops run interleaved in one process (plain, optcli, optcli, plain, ...) so that machine
noise hits both alike; the figure is the ratio of their total steps per second.

    python benchmarks/overhead.py [--steps 2000] [--rounds 10]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch import nn

from optcli.config import RawConfig
from optcli.display import PlainDisplay
from optcli.loop import run_training
from optcli.resolve import resolve_config
from optcli.session import build_session
from optcli.sinks import CsvWriter, RunOutcome, SummaryWriter
from optcli.spec import RunSpec


def guide_spec(steps: int) -> RunSpec:
    config = {
        "seed": 0,
        "device": "cpu",
        "model": {"name": "mlp", "hidden": [128]},
        "data": {"name": "random", "samples": 1280, "features": 784, "classes": 10, "batch_size": 64},
        "optimizer": {"name": "adam", "lr": 1e-3},
        "scheduler": {"name": "step_lr", "step_size": 5, "gamma": 0.1},
        "clip": {"max_norm": 1.0},
        "train": {"epochs": 10_000, "max_steps": steps, "log_every": 1},
    }
    return resolve_config(RawConfig(config, Path.cwd(), "overhead"))


def time_optcli(spec: RunSpec) -> float:
    """Seconds for optcli's loop with the sinks `optcli train` uses (CSV files, summary, plain display)."""
    session = build_session(spec)
    with tempfile.TemporaryDirectory() as directory, open(os.devnull, "w") as devnull:
        run_dir = Path(directory)
        sinks = [CsvWriter(run_dir), SummaryWriter(run_dir, {}), PlainDisplay(devnull)]
        start = time.perf_counter()
        for record in run_training(session):
            for sink in sinks:
                sink.handle(record)
        for sink in sinks:
            sink.close(RunOutcome("completed"))
        return time.perf_counter() - start


def time_plain(spec: RunSpec) -> float:
    """Seconds for the loop a user would write: the same model, data order, optimizer and schedule."""
    session = build_session(spec)  # the same weights and data, built the same way, not timed
    model, optimizer, batches = session.model, session.optimizer, session.batches
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=5, gamma=0.1)
    criterion = nn.CrossEntropyLoss()
    losses, norms = [], []
    step = 0
    start = time.perf_counter()
    while step < spec.total_steps:
        for inputs, labels in batches.epoch():
            optimizer.zero_grad(set_to_none=True)
            loss = criterion(model(inputs), labels)
            loss.backward()
            norms.append(nn.utils.clip_grad_norm_(model.parameters(), max_norm=1.0).item())
            optimizer.step()
            losses.append(loss.item())
            step += 1
            if step == spec.total_steps:
                break
        scheduler.step()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=10)
    arguments = parser.parse_args()
    spec = guide_spec(arguments.steps)
    time_plain(spec), time_optcli(spec)  # warm-up: first-call costs are nobody's overhead
    plain_total = optcli_total = 0.0
    for round_number in range(1, arguments.rounds + 1):
        # Alternate which goes first (ABBA), so a drift in machine speed favours neither.
        if round_number % 2:
            plain, optcli = time_plain(spec), time_optcli(spec)
        else:
            optcli, plain = time_optcli(spec), time_plain(spec)
        plain_total, optcli_total = plain_total + plain, optcli_total + optcli
        print(
            f"round {round_number}: plain {spec.total_steps / plain:8.1f} steps/s   "
            f"optcli {spec.total_steps / optcli:8.1f} steps/s",
            file=sys.stderr,
        )
    steps = spec.total_steps * arguments.rounds
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {steps} steps per loop")
    print(f"plain loop: {steps / plain_total:8.1f} steps/s")
    print(f"optcli:     {steps / optcli_total:8.1f} steps/s")
    print(f"ratio optcli/plain: {plain_total / optcli_total:.3f}")


if __name__ == "__main__":
    main()
