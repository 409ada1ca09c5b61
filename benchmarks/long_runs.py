"""Costs that must not grow with the run: (1) `optcli check` of a OneCycleLR run (a per-step
schedule) of 400 steps against one of 1,000,000; (2) what an epoch costs beyond its steps: a run of
800 one-step epochs with checkpoints written every epoch (checkpoint_every: 1), by time (the
default) and never (checkpoint: false), against the same 800 steps in one epoch (by time). The
training loss improves at nearly every epoch, so each is a best point: the worst case for best.pt.
Whole commands, alternating, in one run.

    python benchmarks/long_runs.py [--rounds 3]

Prints each command's median seconds and the ratios (targets: check within about 10%; 800 one-step
epochs by time within 1.1x the one epoch)."""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

CONFIG = {
    "device": "cpu",
    "model": {"name": "mlp", "hidden": [32]},
    "data": {"name": "teacher", "samples": 640, "features": 16, "classes": 4, "batch_size": 64},
    "optimizer": {"name": "sgd", "lr": 0.01, "momentum": 0.9},
    "scheduler": {"name": "one_cycle_lr", "max_lr": 0.1},
}


TINY_EPOCHS = {
    "device": "cpu",
    "model": {"name": "mlp", "hidden": [64]},
    "data": {"name": "teacher", "samples": 64, "features": 16, "classes": 4, "batch_size": 64},
    "optimizer": {"name": "adam", "lr": 0.003},
}


def seconds(command: str, config: Path, *extra: str) -> float:
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "optcli", command, str(config), *extra], check=True, capture_output=True
    )
    return time.perf_counter() - started


def trained(config: Path) -> tuple[float, float]:
    """`optcli train`'s seconds as a whole command, and the run's own (summary.json's wall_time_s:
    from the session's build to the last file written, without the interpreter's start and torch's
    import, which every run pays alike and which vary by more than the epochs' cost)."""
    with tempfile.TemporaryDirectory() as out:
        whole = seconds("train", config, "--quiet", f"--out={out}")
        summary = json.loads(next(Path(out).glob("*/*/summary.json")).read_text())
    return whole, float(summary["wall_time_s"])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    rounds = parser.parse_args().rounds
    with tempfile.TemporaryDirectory() as directory:
        paths = {}
        for steps in (400, 1_000_000):
            path = Path(directory) / f"steps{steps}.yaml"
            path.write_text(yaml.safe_dump({**CONFIG, "train": {"epochs": steps // 10}}))
            paths[steps] = path
        times: dict[int, list[float]] = {steps: [] for steps in paths}
        policies = {"every epoch": {"checkpoint_every": 1}, "by time": {}, "none": {"checkpoint": False}}
        runs = {}
        for name, train in policies.items():
            runs[name] = Path(directory) / f"{name.replace(' ', '_')}.yaml"
            runs[name].write_text(yaml.safe_dump({**TINY_EPOCHS, "train": {"epochs": 800, **train}}))
        one_epoch = {
            **TINY_EPOCHS,
            "data": {**TINY_EPOCHS["data"], "samples": 64 * 800},
            "train": {"epochs": 1},
        }
        runs["one epoch"] = Path(directory) / "one_epoch.yaml"
        runs["one epoch"].write_text(yaml.safe_dump(one_epoch))
        whole: dict[str, list[float]] = {name: [] for name in runs}
        own: dict[str, list[float]] = {name: [] for name in runs}
        for _ in range(rounds):
            for steps, path in paths.items():
                times[steps].append(seconds("check", path))
            for name, path in runs.items():
                command, run = trained(path)
                whole[name].append(command)
                own[name].append(run)
    short, long = (statistics.median(times[steps]) for steps in (400, 1_000_000))
    print(f"check, 400 steps:       {short:.2f} s")
    print(f"check, 1,000,000 steps: {long:.2f} s")
    print(f"ratio long/short:       {long / short:.3f}")
    for label, measured in (("whole commands", whole), ("the runs' own time (wall_time_s)", own)):
        medians = {name: statistics.median(values) for name, values in measured.items()}
        print(f"{label}:")
        for name, value in medians.items():
            what = (
                "800 steps in one epoch"
                if name == "one epoch"
                else f"800 one-step epochs, checkpoints {name}"
            )
            print(f"  train, {what}: {value:.3f} s")
        print(f"  ratio every epoch/none:    {medians['every epoch'] / medians['none']:.3f}")
        print(f"  ratio by time/none:        {medians['by time'] / medians['none']:.3f}")
        print(f"  ratio by time/one epoch:   {medians['by time'] / medians['one epoch']:.3f}")


if __name__ == "__main__":
    main()
