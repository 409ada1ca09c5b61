"""Scaling features on the CPU: gradient accumulation through optcli against a hand-written
accumulation loop doing the same work (target: 0.97 or more), bf16 against full precision
(informational), and `--nproc 2` against `--nproc 1` as whole commands (informational: two cores do
not make a cluster).

    python benchmarks/scaling.py [--steps 1000] [--rounds 6]
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from overhead import GUIDE_DATA, guide_spec, interleaved, time_optcli  # this folder: run as a script
from torch import nn

from optcli.config.spec import RunSpec
from optcli.train.session import build_session

MICRO = {**GUIDE_DATA, "batch_size": 16}  # four micro-batches of 16 per step of 64


def time_hand_accumulation(spec: RunSpec) -> float:
    """The loop a user writes for accumulation: each micro-batch's loss weighted by its share of the
    step's samples, one clip, step and copy of the loss per optimizer step."""
    session = build_session(spec)
    model, optimizer = session.model, session.optimizer
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=5, gamma=0.1)
    criterion = nn.CrossEntropyLoss()
    losses, norms, step = [], [], 0
    accumulate = spec.train.accumulate
    start = time.perf_counter()
    while step < spec.total_steps:
        batches = list(session.batches.epoch())
        for first in range(0, len(batches), accumulate):
            group = batches[first : first + accumulate]
            total = sum(len(targets) for _, targets in group)
            optimizer.zero_grad(set_to_none=True)
            step_loss = 0.0
            for inputs, targets in group:
                loss = criterion(model(inputs), targets) * (len(targets) / total)
                loss.backward()
                step_loss += loss.item()
            norms.append(nn.utils.clip_grad_norm_(model.parameters(), max_norm=1.0).item())
            optimizer.step()
            losses.append(step_loss)
            step += 1
            if step == spec.total_steps:
                break
        scheduler.step()
    return time.perf_counter() - start


def time_bf16(spec: RunSpec) -> float:
    return time_optcli(dataclasses.replace(spec, train=spec.train.model_copy(update={"precision": "bf16"})))


def time_processes(processes: int) -> float:
    """Seconds for `optcli train configs/teacher_mlp.yaml --nproc N` as a whole command."""
    root = Path(__file__).resolve().parent.parent
    with tempfile.TemporaryDirectory() as out:
        command = [sys.executable, "-m", "optcli", "train", str(root / "configs" / "teacher_mlp.yaml")]
        command += ["--nproc", str(processes), "--out", out, "--quiet", "--set", "train.epochs=60"]
        start = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True, env={**os.environ, "PYTHONPATH": str(root)})
        return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=6)
    arguments = parser.parse_args()
    steps = arguments.steps * arguments.rounds
    spec = guide_spec(arguments.steps, MICRO, accumulate=4)
    totals = interleaved({"hand": time_hand_accumulation, "optcli": time_optcli}, spec, arguments.rounds)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {steps} optimizer steps per loop")
    print(
        f"accumulate 4 x 16: hand {steps / totals['hand']:.1f} steps/s, optcli {steps / totals['optcli']:.1f}"
    )
    print(f"ratio optcli/hand (accumulation): {totals['hand'] / totals['optcli']:.3f}")
    precision = interleaved(
        {"32": time_optcli, "bf16": time_bf16}, guide_spec(arguments.steps), arguments.rounds
    )
    print(f"ratio bf16/32 on the CPU (informational): {precision['32'] / precision['bf16']:.3f}")
    seconds = {processes: min(time_processes(processes) for _ in range(2)) for processes in (1, 2)}
    print(f"--nproc 1: {seconds[1]:.1f} s, --nproc 2: {seconds[2]:.1f} s (teacher_mlp, 60 epochs, best of 2)")


if __name__ == "__main__":
    main()
