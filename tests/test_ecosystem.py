"""The optimizers users pip install, every one of them: each trains a few steps, checkpoints, and
resumes to the same weights as an uninterrupted run, bit for bit, or is refused before training with
a message that says why (exit 2, nothing written).

Walks every optimizer class that pytorch-optimizer exports (its own registry, plus its wrappers),
torch-optimizer's, schedulefree's and lion-pytorch's, at the versions pyproject.toml's dev extra
pins. Each class's outcome must be the one `tests/ecosystem_outcomes.csv` records (exact, without
checkpoints or refused, with the message's words), so that a change either way (an optimizer that
stops working, or one that starts to) fails, as does a class the table does not know.
`python -m tests.test_ecosystem` prints the table the README quotes; `--write` rewrites the CSV
file after a change that was meant.
"""

from __future__ import annotations

import argparse
import csv
import importlib
import inspect
import re
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Any

import pytest
import torch

from optcli.components.optimizers import shapes_refused
from optcli.train.checkpoints import load_checkpoint
from tests.conftest import assert_clean_exit, invoke, read_csv, run_dirs, write_config

PACKAGES = ("pytorch_optimizer", "torch_optimizer", "schedulefree", "lion_pytorch")
EXPECTED = Path(__file__).with_name("ecosystem_outcomes.csv")


def ecosystem_optimizers() -> list[str]:
    """`package:Class` for every optimizer class the packages export."""
    found: list[str] = []
    for package in PACKAGES:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            module = importlib.import_module(package)
        classes = {
            name: value
            for name, value in vars(module).items()
            if inspect.isclass(value)
            and issubclass(value, torch.optim.Optimizer)
            and value is not torch.optim.Optimizer
            and not name.startswith("_")
        }
        if package == "pytorch_optimizer":  # its registry, by name (some are torch's own, re-exported)
            from pytorch_optimizer.optimizer import OPTIMIZERS

            classes.update(
                {cls.__name__: cls for cls in OPTIMIZERS.values() if hasattr(module, cls.__name__)}
            )
        found += [f"{package}:{name}" for name in sorted(classes)]
    return found


def optimizer_section(path: str) -> dict[str, Any]:
    """The section a user would write: the class by its import path, lr 1e-3 where it takes one, and
    AdamW inside a wrapper whose first argument is the optimizer it wraps."""
    module, _, name = path.partition(":")
    target = getattr(importlib.import_module(module), name)
    parameters = inspect.signature(target).parameters
    section: dict[str, Any] = {"name": path}
    if "lr" in parameters:
        section["lr"] = 1e-3
    if next(iter(parameters), None) == "optimizer":
        section["optimizer"] = {"name": "adamw", "lr": 1e-3}
    return section


def takes_matrices_only(path: str) -> bool:
    """Muon's kind (AdaMuon): a 1-D parameter is refused, so the user splits the optimizer."""
    module, _, name = path.partition(":")
    target = getattr(importlib.import_module(module), name)
    return bool(shapes_refused(target, [("bias", torch.zeros(3))])[1])


def config(path: str, epochs: int) -> dict[str, Any]:
    """The optimizer over the whole MLP; one of matrices only, on the matrices, with AdamW for the rest."""
    section = optimizer_section(path)
    if takes_matrices_only(path):
        rest = {"name": "adamw", "lr": 1e-3, "params": "rest"}
        section = {"parts": {"matrices": {**section, "params": "matrices"}, "rest": rest}}
    return {
        "seed": 0,
        "device": "cpu",
        "model": {"name": "mlp", "hidden": [8]},
        "data": {"name": "teacher", "samples": 64, "features": 4, "classes": 3, "batch_size": 16},
        "optimizer": section,
        "train": {"epochs": epochs},
    }


def outcome(path: str, directory: Path) -> str:
    """'exact' (trained, checkpointed, resumed to the uninterrupted run's weights and rows),
    'without checkpoints' (refused because its state cannot be checkpointed, and trains with
    train.checkpoint: false), or 'refused: <the message>'. Anything else fails the test that asks."""
    uninterrupted = write_config(directory, config(path, epochs=2), "full.yaml")
    first = invoke("train", uninterrupted, "--out", directory / "full", "--quiet")
    if first.exit_code == 2:
        assert_clean_exit(first, 2)
        assert not (directory / "full").exists(), "a refused config wrote files"
        message = " ".join(first.stderr.removeprefix("error: ").replace(str(directory), "DIR").split())
        if "train.checkpoint: false" not in message:
            return "refused: " + message
        without = invoke(
            "train", uninterrupted, "--out", directory / "bare", "--set", "train.checkpoint=false"
        )
        assert_clean_exit(without, 0)
        (bare,) = run_dirs(directory / "bare")
        assert not (bare / "checkpoints").exists() or not any((bare / "checkpoints").iterdir())
        return "without checkpoints: " + message
    assert first.exit_code == 0, first.output
    stopped = write_config(directory, config(path, epochs=1), "half.yaml")
    assert invoke("train", stopped, "--out", directory / "half", "--quiet").exit_code == 0
    (half,) = run_dirs(directory / "half")
    resumed = invoke("resume", half, "--set", "train.epochs=2", "--allow-changes", "--quiet")
    assert resumed.exit_code == 0, resumed.output
    (full,) = run_dirs(directory / "full")
    expected = load_checkpoint(full / "checkpoints" / "last.pt")["model"]
    got = load_checkpoint(half / "checkpoints" / "last.pt")["model"]
    assert expected.keys() == got.keys()
    assert all(torch.equal(expected[key], got[key]) for key in expected), "resumed weights differ"
    assert without_times(full / "metrics.csv") == without_times(half / "metrics.csv")
    return "exact"


def without_times(path: Path) -> list[dict[str, str]]:
    return [{key: value for key, value in row.items() if not key.endswith("_s")} for row in read_csv(path)]


def read_expected() -> dict[str, str]:
    with EXPECTED.open(newline="") as stream:
        return {row["optimizer"]: row["outcome"] for row in csv.DictReader(stream)}


def without_addresses(text: str) -> str:
    """A message as it reads on any machine (an object's repr holds its memory address)."""
    return re.sub(r" at 0x[0-9a-f]+", "", text)


ALL = ecosystem_optimizers()


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore")
@pytest.mark.parametrize("path", ALL)
def test_every_installable_optimizer_has_the_outcome_the_table_records(path, tmp_path):
    expected = read_expected()
    assert path in expected, (
        f"{path} is not in {EXPECTED.name} (another version of its package?): "
        "python -m tests.test_ecosystem --write, then read the change"
    )
    assert without_addresses(outcome(path, tmp_path)) == expected[path]


def test_the_table_holds_every_installed_class_and_no_other():
    assert sorted(read_expected()) == sorted(ALL)


def main() -> None:
    """The outcome table, as markdown: one row per optimizer, then the counts per package; with
    --write, tests/ecosystem_outcomes.csv too."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--write", action="store_true", help=f"rewrite {EXPECTED.name}")
    write = parser.parse_args().write
    warnings.simplefilter("ignore")
    counts: dict[str, list[int]] = {}
    outcomes: dict[str, str] = {}
    for path in ALL:
        with tempfile.TemporaryDirectory() as directory:
            try:
                result = without_addresses(outcome(path, Path(directory)))
            except AssertionError as error:
                result = f"FAILED: {str(error).splitlines()[0] if str(error) else 'assertion'}"
        outcomes[path] = result
        package = path.partition(":")[0]
        tally = counts.setdefault(package, [0, 0, 0])
        tally[0] += result == "exact"
        tally[2] += result.startswith("without checkpoints")
        tally[1] += 1
        print(f"| `{path}` | {' '.join(result.split())[:200]} |", flush=True)
    for package, (exact, total, bare) in counts.items():
        print(
            f"{package}: {exact} of {total} train and resume exactly; {bare} more train without checkpoints",
            file=sys.stderr,
        )
    if write:
        with EXPECTED.open("w", newline="") as stream:
            writer = csv.writer(stream)
            writer.writerow(["optimizer", "outcome"])
            writer.writerows(sorted(outcomes.items()))


if __name__ == "__main__":
    main()
