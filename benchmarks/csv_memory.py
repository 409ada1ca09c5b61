"""A large CSV: the peak memory and the time of `optcli check` and of `optcli train --max-steps 1` (to
the first step, and its checkpoint) on it, against the float32 tensor it becomes and against numpy
(and pandas, when installed) reading the same file.

    python benchmarks/csv_memory.py [--rows 2000000] [--columns 32]

Peak memory is the child process's maximum resident size, less that of the same command on a CSV of
ten rows (the interpreter, torch and optcli), as a multiple of the tensor's bytes (target: about 2x)."""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy
import yaml
from peak import command_peak


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


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=2_000_000)
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
        report = {}
        for command, extra in (("check", ()), ("train", ("--max-steps", "1", "--quiet", "--out", directory))):
            baseline, _ = command_peak(command, str(configs["small"]), *extra)
            peak, seconds = command_peak(command, str(configs["large"]), *extra)
            report[command] = (seconds, peak * 2**20, baseline * 2**20)
        large = Path(directory) / "large.csv"
        started = time.perf_counter()
        numpy.loadtxt(large, delimiter=",", skiprows=1, usecols=range(arguments.columns), dtype=numpy.float32)
        readers = {"numpy.loadtxt": time.perf_counter() - started}
        try:
            import pandas
        except ImportError:
            pandas = None
        if pandas is not None:
            started = time.perf_counter()
            pandas.read_csv(large)
            readers["pandas.read_csv"] = time.perf_counter() - started
    tensor = arguments.rows * arguments.columns * 4
    print(f"rows x columns:          {arguments.rows:,} x {arguments.columns}")
    print(f"float32 tensor:          {tensor / 2**20:.1f} MiB")
    for command, (seconds, peak, baseline) in report.items():
        above = peak - baseline
        print(f"{command}, peak above base:  {above / 2**20:.1f} MiB = {above / tensor:.2f}x the tensor")
        print(f"{command}, whole command:    {seconds:.2f} s")
    for reader, seconds in readers.items():
        print(f"{reader} alone:     {seconds:.2f} s")


if __name__ == "__main__":
    main()
