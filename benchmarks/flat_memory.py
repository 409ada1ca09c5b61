"""Memory that stays flat over a long run: the peak resident size of `optcli train --quiet` for a short
and a long run of the same tiny model (100 steps an epoch), and of `optcli schedule --csv --png` (the
one command that walks every step) for a schedule of 10,000 and of 1,000,000 steps, with its speed.
Each command in a process of its own.

    python benchmarks/flat_memory.py [--short 10000] [--long 200000]

Prints the peaks and their differences (target: within a few MB: nothing is kept per step) and the
schedule's steps per second."""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import yaml
from peak import command_peak

CONFIG = {
    "device": "cpu",
    "model": {"name": "mlp", "hidden": [32]},
    "data": {"name": "teacher", "samples": 1600, "features": 16, "classes": 4, "batch_size": 16},
    "optimizer": {"name": "adam", "lr": 0.001},
    "train": {"threads": 1},
}


SCHEDULE = {
    "device": "cpu",
    "model": {"name": "mlp", "hidden": [32]},
    "data": {"name": "teacher", "samples": 64, "features": 16, "classes": 4, "batch_size": 64},
    "optimizer": {"name": "sgd", "lr": 0.1},
    "scheduler": {"name": "one_cycle_lr", "max_lr": 0.1, "interval": "step"},
}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--short", type=int, default=10_000)
    parser.add_argument("--long", type=int, default=200_000)
    arguments = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        peaks = {}
        for steps in (arguments.short, arguments.long):
            config = Path(directory) / f"steps{steps}.yaml"
            config.write_text(
                yaml.safe_dump({**CONFIG, "train": {**CONFIG["train"], "epochs": steps // 100}})
            )
            peaks[steps], _ = command_peak("train", str(config), "--quiet", "--out", f"{directory}/runs")
        walks = {}
        for steps in (10_000, 1_000_000):
            config = Path(directory) / f"schedule{steps}.yaml"
            config.write_text(yaml.safe_dump({**SCHEDULE, "train": {"epochs": steps}}))
            csv, png = f"{directory}/schedule.csv", f"{directory}/schedule.png"
            walks[steps] = command_peak("schedule", str(config), "--csv", csv, "--png", png)
    short, long = peaks[arguments.short], peaks[arguments.long]
    print(f"train peak, {arguments.short:,} steps: {short:.1f} MiB")
    print(f"train peak, {arguments.long:,} steps: {long:.1f} MiB")
    print(f"difference: {long - short:+.1f} MiB")
    (few, few_seconds), (many, many_seconds) = walks[10_000], walks[1_000_000]
    print(
        f"schedule peak, 10,000 steps: {few:.1f} MiB; 1,000,000 steps: {many:.1f} MiB ({many - few:+.1f} MiB)"
    )
    rate = (1_000_000 - 10_000) / (many_seconds - few_seconds)  # start-up (imports, the check) taken out
    print(
        f"schedule speed: {rate:,.0f} steps/s ({many_seconds:.1f} s for 1,000,000 steps, with its CSV and PNG)"
    )


if __name__ == "__main__":
    main()
