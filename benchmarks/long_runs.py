"""Costs that must not grow with the run's length: `optcli check` of a OneCycleLR run (a per-step
schedule) of 400 steps against one of 1,000,000, as whole commands, alternating, in one run.

    python benchmarks/long_runs.py [--rounds 3]

Prints each command's median seconds and the ratio (target: within about 10%)."""

from __future__ import annotations

import argparse
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


def seconds(config: Path) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "optcli", "check", str(config)], check=True, capture_output=True)
    return time.perf_counter() - started


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
        for _ in range(rounds):
            for steps, path in paths.items():
                times[steps].append(seconds(path))
    short, long = (statistics.median(times[steps]) for steps in (400, 1_000_000))
    print(f"check, 400 steps:       {short:.2f} s")
    print(f"check, 1,000,000 steps: {long:.2f} s")
    print(f"ratio long/short:       {long / short:.3f}")


if __name__ == "__main__":
    main()
