"""Training speed by torch's intra-op thread count, on a quiet machine and beside one busy process
(a CPU-bound Python loop): each shipped config below trained by `optcli train` as a user runs it,
with train.threads 1..cores and the default (unset), and steps/s read from summary.json. Each
setting's speed is given as a ratio to the best setting of the same condition, measured in one run.

    python benchmarks/threads.py [--rounds 2] [--configs adam_steplr.yaml ...] [--env OMP_WAIT_POLICY=PASSIVE]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CONFIGS = ["adam_steplr.yaml", "fruit_csv.yaml", "muon_adamw.yaml", "waves.yaml", "digits_adam.yaml"]
BUSY = "while True: pass"


def steps_per_second(config: str, threads: str | None, environment: dict[str, str]) -> float:
    with tempfile.TemporaryDirectory() as out:
        command = [sys.executable, "-m", "optcli", "train", str(REPO / "configs" / config), "--quiet"]
        command += ["--out", out, "--set", "train.early_stopping=null"]
        if threads is not None:
            command += ["--set", f"train.threads={threads}"]
        subprocess.run(command, check=True, capture_output=True, env=environment, cwd=REPO)
        summary = json.loads(next(Path(out).glob("*/*/summary.json")).read_text())
        return float(summary["steps_per_second"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--configs", nargs="+", default=CONFIGS)
    parser.add_argument("--env", nargs="*", default=[], help="KEY=VALUE set for every run")
    options = parser.parse_args()
    environment = {**os.environ, **dict(item.split("=", 1) for item in options.env)}
    cores = len(os.sched_getaffinity(0))
    settings: list[str | None] = [None, *(str(n) for n in range(1, cores + 1))]
    for condition in ("quiet", "busy"):
        busy = subprocess.Popen([sys.executable, "-c", BUSY]) if condition == "busy" else None
        try:
            for config in options.configs:
                speeds: dict[str | None, list[float]] = {setting: [] for setting in settings}
                for _ in range(options.rounds):  # settings interleaved, so that noise hits all alike
                    for setting in settings:
                        speeds[setting].append(steps_per_second(config, setting, environment))
                medians = {setting: statistics.median(found) for setting, found in speeds.items()}
                best = max(medians.values())
                shown = "  ".join(
                    f"{setting or 'default'}: {value:7.0f} ({value / best:.2f})"
                    for setting, value in medians.items()
                )
                print(f"{condition:5}  {config:18} {shown}", flush=True)
        finally:
            if busy is not None:
                busy.kill()
                busy.wait()


if __name__ == "__main__":
    main()
