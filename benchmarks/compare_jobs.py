"""Wall-clock speedup of `optcli compare --jobs 2` over `--jobs 1` on configs/compare_guide.yaml.

Each measurement is the whole command as a user runs it (process start, torch import, workers, all
15 runs, the report), alternating --jobs 1 and --jobs 2 so that machine noise hits both alike. It
also checks that both give the same results.csv. As shipped (30 epochs) each run trains for a quarter
of a second, so fixed costs (importing torch, once in the main process and once in the fork server
the workers come from; drawing curves.png) weigh heavily; the longer setting shows the speedup once
training dominates.

    python benchmarks/compare_jobs.py [--rounds 5] [--epochs 30 120]
"""

from __future__ import annotations

import argparse
import csv
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
KEPT = ("arm", "seed", "status", "final_loss", "best_loss", "steps", "init_hash", "data_hash")


def run_compare(jobs: int, out: Path, settings: list[str]) -> tuple[float, list[dict[str, str]]]:
    command = [sys.executable, "-m", "optcli", "compare", "configs/compare_guide.yaml", "--quiet"]
    command += ["--jobs", str(jobs), "--out", str(out), *settings]
    start = time.perf_counter()
    subprocess.run(command, cwd=REPO, check=True, capture_output=True)
    seconds = time.perf_counter() - start
    results = next(out.glob("compare-*/*/results.csv"))
    with results.open(newline="") as stream:
        rows = [{key: row[key] for key in KEPT} for row in csv.DictReader(stream)]
    return seconds, rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument(
        "--epochs", type=int, nargs="*", default=[30, 120], help="train.epochs to measure at (30: as shipped)"
    )
    arguments = parser.parse_args()
    for epochs in arguments.epochs:
        measure(arguments.rounds, [f"--set=train.epochs={epochs}"], f"train.epochs={epochs}")


def measure(rounds: int, settings: list[str], label: str) -> None:
    """Medians over the rounds, and of each round's own ratio: the machine's speed drifts over minutes
    (it is shared), and the two commands of one round run side by side in time."""
    seconds: dict[int, list[float]] = {1: [], 2: []}
    reference = None
    with tempfile.TemporaryDirectory() as directory:
        for round_number in range(rounds):
            order = (1, 2) if round_number % 2 == 0 else (2, 1)
            for jobs in order:
                out = Path(directory) / f"round{round_number}-jobs{jobs}"
                taken, rows = run_compare(jobs, out, settings)
                seconds[jobs].append(taken)
                print(f"{label} round {round_number + 1}: --jobs {jobs}: {taken:.2f} s", file=sys.stderr)
                if reference is None:
                    reference = rows
                elif rows != reference:
                    raise SystemExit("results differ between runs: --jobs must not change them")
    one, two = statistics.median(seconds[1]), statistics.median(seconds[2])
    ratios = [a / b for a, b in zip(seconds[1], seconds[2], strict=True)]
    print(
        f"{label}: --jobs 1 {one:.2f} s, --jobs 2 {two:.2f} s (medians of {rounds} rounds), "
        f"speedup {statistics.median(ratios):.2f}x (median of the rounds' ratios, "
        f"{min(ratios):.2f} to {max(ratios):.2f}); results identical"
    )


if __name__ == "__main__":
    main()
