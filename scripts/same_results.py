"""Do two trees of optcli compute the same thing? Trains every shipped training config with each tree
(in a process of its own, one thread, at most --max-steps steps) and compares their metrics.csv and
epochs.csv, time columns aside. What a refactoring must leave equal:

    git worktree add /tmp/before <commit>
    python scripts/same_results.py /tmp/before [--max-steps 300]

Exit 1 when any file differs (each named).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def rows_without_times(path: Path) -> list[list[str]]:
    lines = [line.split(",") for line in path.read_text().splitlines()]
    keep = [index for index, name in enumerate(lines[0]) if not name.endswith("_s")]
    return [[row[index] for index in keep] for row in lines]


def training_configs() -> list[Path]:
    """The configs `optcli train` takes (a compare file has runs:, a Python file is a component)."""
    return [path for path in sorted((REPO / "configs").glob("*.yaml")) if "\nruns:" not in path.read_text()]


def train(tree: Path, config: Path, out: Path, max_steps: int, *settings: str) -> Path | None:
    command = [sys.executable, "-m", "optcli", "train", str(config), "--quiet", "--threads", "1"]
    command += ["--out", str(out), "--max-steps", str(max_steps), *settings]
    environment = {**os.environ, "PYTHONPATH": str(tree), "OPTCLI_CACHE": str(out.parent / "cache")}
    result = subprocess.run(command, capture_output=True, text=True, env=environment, timeout=900)
    if result.returncode != 0:
        print(f"{config.name} with {tree}: exit {result.returncode}: {result.stderr.strip()[-300:]}")
        return None
    return next(out.glob("*/*"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("before", type=Path, help="the other tree (a git worktree)")
    parser.add_argument("--max-steps", type=int, default=300)
    parser.add_argument("--only", nargs="*", default=None, help="these configs' names (fruit_csv.yaml ...)")
    arguments = parser.parse_args()
    differ = []
    trees = (("before", arguments.before.resolve()), ("after", REPO))
    with tempfile.TemporaryDirectory() as scratch:
        # fruit_finetune.yaml starts from a fruit_csv run (model.init): each tree's own.
        fruit = {
            side: train(tree, REPO / "configs" / "fruit_csv.yaml", Path(scratch) / f"{side}-init", 50)
            for side, tree in trees
        }
        for config in training_configs():
            if arguments.only is not None and config.name not in arguments.only:
                continue
            runs = [
                train(
                    tree,
                    config,
                    Path(scratch) / f"{side}-{config.stem}",
                    arguments.max_steps,
                    *([f"--set=model.init={fruit[side]}"] if config.name == "fruit_finetune.yaml" else []),
                )
                for side, tree in trees
            ]
            if None in runs:
                differ.append(f"{config.name}: did not train with both trees")
                continue
            for name in ("metrics.csv", "epochs.csv"):
                same = rows_without_times(runs[0] / name) == rows_without_times(runs[1] / name)  # type: ignore[operator]
                print(f"{config.name} {name}: {'equal' if same else 'DIFFERENT'}", flush=True)
                if not same:
                    differ.append(f"{config.name} {name}")
    if differ:
        raise SystemExit("differ: " + ", ".join(differ))


if __name__ == "__main__":
    main()
