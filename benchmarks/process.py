"""`optcli train` as a user runs it, a whole process, against a plain script doing the same work.

The guide's SimpleNN (784-128-10) for 4,000 steps with Adam, StepLR, clip_grad_norm_ and a CSV row per
step. Three commands run interleaved, so that machine noise hits all alike: the plain script, `optcli
train --quiet`, and `optcli train` with its live table on a terminal (a pseudo-terminal here). Each
figure is the whole process's wall time, start-up included; the ratios are plain / optcli.

    python benchmarks/process.py [--steps 4000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import os
import pty
import select
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CONFIG = """\
seed: 0
device: cpu
model: {{name: mlp, hidden: [128]}}
data: {{name: random, samples: 1280, features: 784, classes: 10, batch_size: 64}}
optimizer: {{name: adam, lr: 1.0e-3}}
scheduler: {{name: step_lr, step_size: 50, gamma: 0.5}}
clip: {{max_norm: 1.0}}
train: {{epochs: {epochs}, max_steps: {steps}}}
"""

# The loop a user writes for the same work: the same data, weights, order and schedule.
PLAIN_SCRIPT = """\
import csv, sys, time
import torch
from torch import nn

steps, out = int(sys.argv[1]), sys.argv[2]
generator = torch.Generator().manual_seed(0)
inputs = torch.randn(1280, 784, generator=generator)
labels = torch.randint(0, 10, (1280,), generator=generator)
torch.manual_seed(0)
model = nn.Sequential(nn.Flatten(), nn.Linear(784, 128), nn.ReLU(), nn.Linear(128, 10))
optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=50, gamma=0.5)
criterion = nn.CrossEntropyLoss()
order_generator = torch.Generator().manual_seed(1)
start = time.perf_counter()
with open(out, "w", newline="") as stream:
    writer = csv.writer(stream)
    writer.writerow(["step", "epoch", "loss", "lr", "grad_norm", "elapsed_s"])
    step, epoch = 0, 0
    while step < steps:
        epoch += 1
        order = torch.randperm(1280, generator=order_generator)
        for first in range(0, 1280, 64):
            index = order[first : first + 64]
            lr = optimizer.param_groups[0]["lr"]
            optimizer.zero_grad(set_to_none=True)
            loss = criterion(model(inputs[index]), labels[index])
            loss.backward()
            norm = nn.utils.clip_grad_norm_(model.parameters(), max_norm=1.0)
            optimizer.step()
            step += 1
            writer.writerow([step, epoch, repr(loss.item()), repr(lr), repr(norm.item()), time.perf_counter() - start])
            if step == steps:
                break
        scheduler.step()
print(f"done: {step} steps")
"""


def run_plain(directory: Path, steps: int) -> float:
    script = directory / "plain.py"
    script.write_text(PLAIN_SCRIPT)
    return _timed([sys.executable, str(script), str(steps), str(directory / "plain.csv")])


def run_optcli(config: Path, out: Path, quiet: bool) -> float:
    command = [sys.executable, "-m", "optcli", "train", str(config), "--out", str(out)]
    if quiet:
        return _timed([*command, "--quiet"])
    return _timed_on_terminal(command)


def _timed(command: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def _timed_on_terminal(command: list[str]) -> float:
    """The command with a pseudo-terminal as its stdout, as a user's shell gives it (the live table)."""
    leader, follower = pty.openpty()
    start = time.perf_counter()
    process = subprocess.Popen(
        command, stdout=follower, stderr=subprocess.DEVNULL, env={**os.environ, "COLUMNS": "120"}
    )
    os.close(follower)
    while True:  # read what the table draws, as a terminal would, so the process never blocks on it
        ready, _, _ = select.select([leader], [], [], 0.1)
        if ready:
            try:
                if not os.read(leader, 65536):
                    break
            except OSError:
                break
        elif process.poll() is not None:
            break
    process.wait()
    os.close(leader)
    if process.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed with exit code {process.returncode}")
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=4000)
    parser.add_argument("--rounds", type=int, default=5)
    arguments = parser.parse_args()
    with tempfile.TemporaryDirectory() as name:
        directory = Path(name)
        config = directory / "guide.yaml"
        config.write_text(CONFIG.format(steps=arguments.steps, epochs=arguments.steps // 20 + 1))
        commands = {
            "plain": lambda: run_plain(directory, arguments.steps),
            "optcli --quiet": lambda: run_optcli(config, directory / "runs", quiet=True),
            "optcli (live table)": lambda: run_optcli(config, directory / "runs", quiet=False),
        }
        commands["plain"]()  # warm-up: the first process pays for cold file caches
        totals = dict.fromkeys(commands, 0.0)
        for round_number in range(1, arguments.rounds + 1):
            order = list(commands) if round_number % 2 else list(reversed(commands))
            seconds = {name: commands[name]() for name in order}
            for name, value in seconds.items():
                totals[name] += value
            print(
                f"round {round_number}: " + "   ".join(f"{n} {s:.2f}s" for n, s in seconds.items()),
                file=sys.stderr,
            )
    print(f"{arguments.steps} steps per process, {arguments.rounds} rounds, whole processes")
    for name, total in totals.items():
        print(f"{name + ':':22s}{total / arguments.rounds:6.2f} s per run")
    print(f"ratio optcli --quiet / plain:      {totals['plain'] / totals['optcli --quiet']:.3f}")
    print(f"ratio optcli live table / plain:   {totals['plain'] / totals['optcli (live table)']:.3f}")


if __name__ == "__main__":
    main()
