"""`optcli predict` over a large input in flat memory: the peak resident size of predicting a CSV of
500,000 rows and of 5,000,000 rows (the same rows repeated; both many of the reader's blocks) with a
run of configs/fruit_csv.yaml, each command in a process of its own, with its speed.

    python benchmarks/predict_memory.py [--short 500000] [--long 5000000]

Prints both peaks, their difference (target: within a few MB: the input is read a block at a time and
every batch's rows are written as they come) and rows per second."""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

from peak import command_peak

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--short", type=int, default=500_000)
    parser.add_argument("--long", type=int, default=5_000_000)
    arguments = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        runs = Path(directory) / "runs"
        subprocess.run(
            [
                sys.executable,
                "-m",
                "optcli",
                "train",
                str(REPO / "configs" / "fruit_csv.yaml"),
                "--quiet",
                "--out",
                str(runs),
            ],
            check=True,
            capture_output=True,
        )
        header, *rows = (REPO / "configs" / "data" / "fruit.csv").read_text().splitlines()
        measured = {}
        for count in (arguments.short, arguments.long):
            table = Path(directory) / f"rows{count}.csv"
            with table.open("w") as stream:
                stream.write(header + "\n")
                for index in range(count):
                    stream.write(rows[index % len(rows)] + "\n")
            out = Path(directory) / "predictions.csv"
            measured[count] = command_peak("predict", str(runs / "fruit_csv"), str(table), "--out", str(out))
    (short, _), (long, seconds) = measured[arguments.short], measured[arguments.long]
    print(f"predict peak, {arguments.short:,} rows: {short:.1f} MiB")
    print(f"predict peak, {arguments.long:,} rows: {long:.1f} MiB ({long - short:+.1f} MiB)")
    print(
        f"speed: {arguments.long / seconds:,.0f} rows/s ({seconds:.1f} s for {arguments.long:,} rows, start-up included)"
    )


if __name__ == "__main__":
    main()
