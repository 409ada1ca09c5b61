"""Memory that stays flat over a long run: the peak resident size of `optcli train --quiet` for a short
and a long run of the same tiny model (100 steps an epoch), each in a process of its own.

    python benchmarks/flat_memory.py [--short 10000] [--long 200000]

Prints both peaks and their difference (target: within a few MB: nothing is kept per step)."""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

CONFIG = {
    "device": "cpu",
    "model": {"name": "mlp", "hidden": [32]},
    "data": {"name": "teacher", "samples": 1600, "features": 16, "classes": 4, "batch_size": 16},
    "optimizer": {"name": "adam", "lr": 0.001},
    "train": {"threads": 1},
}


def peak_mib(config: Path, out: Path) -> float:
    script = (
        "import resource, subprocess, sys; "
        f"subprocess.run([sys.executable, '-m', 'optcli', 'train', {str(config)!r}, '--quiet', '--out', {str(out)!r}], "
        "check=True, capture_output=True); print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024)"
    )
    return float(
        subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
    )


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
            peaks[steps] = peak_mib(config, Path(directory) / "runs")
    short, long = peaks[arguments.short], peaks[arguments.long]
    print(f"peak, {arguments.short:,} steps: {short:.1f} MiB")
    print(f"peak, {arguments.long:,} steps: {long:.1f} MiB")
    print(f"difference: {long - short:+.1f} MiB")


if __name__ == "__main__":
    main()
