"""A large CSV: the peak memory and the time of `optcli check` on it, against the float32 tensor it
becomes and against numpy reading the same file (numpy.loadtxt).

    python benchmarks/csv_memory.py [--rows 200000] [--columns 32]

Peak memory is the child process's maximum resident size, less that of the same command on a CSV of
ten rows (the interpreter, torch and optcli), as a multiple of the tensor's bytes (target: about 2x)."""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy
import yaml


def write_csv(path: Path, rows: int, columns: int) -> None:
    generator = numpy.random.default_rng(0)
    with path.open("w") as stream:
        stream.write(",".join(f"x{index}" for index in range(columns)) + ",label\n")
        for start in range(0, rows, 50_000):
            block = generator.standard_normal((min(50_000, rows - start), columns)).astype(numpy.float32)
            labels = generator.integers(0, 4, len(block))
            stream.writelines(
                ",".join(f"{value:.6g}" for value in row) + f",c{label}\n"
                for row, label in zip(block, labels, strict=True)
            )


def peak_of(config: Path) -> tuple[float, float]:
    """Seconds and peak resident bytes of `optcli check CONFIG` in a child process of its own."""
    script = (
        "import resource, subprocess, sys, time; started = time.perf_counter(); "
        f"subprocess.run([sys.executable, '-m', 'optcli', 'check', {str(config)!r}], check=True, capture_output=True); "
        "print(time.perf_counter() - started, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024)"
    )
    seconds, peak = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    ).stdout.split()
    return float(seconds), float(peak)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--columns", type=int, default=32)
    arguments = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        configs = {}
        for name, rows in (("small", 10), ("large", arguments.rows)):
            data = Path(directory) / f"{name}.csv"
            write_csv(data, rows, arguments.columns)
            config = {
                "device": "cpu",
                "model": {"name": "mlp", "hidden": [16]},
                "data": {"name": "csv", "path": str(data), "target": "label", "batch_size": 256},
                "optimizer": "adam",
            }
            configs[name] = Path(directory) / f"{name}.yaml"
            configs[name].write_text(yaml.safe_dump(config))
        _, baseline = peak_of(configs["small"])
        seconds, peak = peak_of(configs["large"])
        started = time.perf_counter()
        numpy.loadtxt(
            Path(directory) / "large.csv", delimiter=",", skiprows=1, usecols=range(arguments.columns)
        )
        numpy_seconds = time.perf_counter() - started
    tensor = arguments.rows * arguments.columns * 4
    print(f"rows x columns:          {arguments.rows:,} x {arguments.columns}")
    print(f"float32 tensor:          {tensor / 2**20:.1f} MiB")
    print(
        f"check, peak above base:  {(peak - baseline) / 2**20:.1f} MiB = {(peak - baseline) / tensor:.2f}x the tensor"
    )
    print(f"check, whole command:    {seconds:.2f} s")
    print(f"numpy.loadtxt alone:     {numpy_seconds:.2f} s")
    _ = resource  # (the child's peak is read in its own process)


if __name__ == "__main__":
    main()
