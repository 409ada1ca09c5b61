"""A finished run opened for use: the model its `config.yaml` describes, built through the same bound
components as training, holding the weights a checkpoint scored.

Nothing is rebuilt by guesswork. The config is the run's recorded one; the preprocessing and the class
names are the run's `data.json`; the weights are the checkpoint's `model` (for an optimizer with a
train and an eval mode, the eval-mode weights every metric judged); code of the user's that the run
imported is checked against the hashes its summary.json recorded.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
import yaml

from optcli.config.loading import load_config
from optcli.config.resolve import resolve_config
from optcli.config.spec import RunSpec
from optcli.errors import ConfigError
from optcli.train.checkpoints import Checkpoint, config_differences, load_checkpoint, text_sha256
from optcli.train.resume import refilled
from optcli.train.run import code_hashes

CheckpointName = Literal["best", "last"]


@dataclass(frozen=True)
class TrainedRun:
    run_dir: Path
    spec: RunSpec
    checkpoint_name: CheckpointName
    checkpoint: Checkpoint
    data: dict[str, Any]  # the run's data.json: sizes, class names, normalization
    summary: dict[str, Any]

    @property
    def epoch(self) -> int:
        """The epoch whose end the checkpoint holds (its loop state points at the next one)."""
        state = self.checkpoint["loop"]
        return int(state["epoch"]) - (0 if state.get("batches_done", 0) else 1)

    @property
    def step(self) -> int:
        return int(self.checkpoint["loop"]["step"])

    @property
    def class_names(self) -> list[str] | None:
        names = self.data.get("class_names")
        return list(names) if names else None

    def build_model(self, device: torch.device | str = "cpu") -> torch.nn.Module:
        """The run's model with the checkpoint's scored weights, in eval mode."""
        model = self.spec.model.build()
        try:
            model.load_state_dict(dict(self.checkpoint["model"]))
        except RuntimeError as error:
            raise ConfigError(
                f"{self.checkpoint_path}: its weights do not fit the model the run's config builds now "
                f"(has the model's code changed since the run?): {str(error).splitlines()[0]}"
            ) from None
        return model.to(device).eval()

    @property
    def checkpoint_path(self) -> Path:
        return self.run_dir / "checkpoints" / f"{self.checkpoint_name}.pt"


def find_run(path: Path, checkpoint: CheckpointName) -> Path:
    """A run directory, or the newest run in a folder of one name's runs that has the checkpoint (as
    `model.init` reads it)."""
    if not path.is_dir():
        raise ConfigError(f"{path}: no such run directory")
    if (path / "config.yaml").is_file():
        return path
    if (path / "comparison.json").is_file() or (path / "suite.json").is_file():
        # Its runs are arms and seeds, not one name's runs by time: the newest by name means nothing.
        example = next(
            iter(sorted(run.parent.parent.name for run in path.glob("*/checkpoints/*.pt"))), "ARM-seed0"
        )
        raise ConfigError(
            f"{path}: a comparison's folder holds a run per arm and seed; name one: {path / example}"
        )
    runs = sorted(run.parent.parent for run in path.glob(f"*/checkpoints/{checkpoint}.pt"))
    if not runs:
        raise ConfigError(
            f"{path}: neither a run directory (no config.yaml) nor a folder of runs with a {checkpoint}.pt"
        )
    return runs[-1]


def open_run(
    path: Path, checkpoint: CheckpointName = "best", overrides: list[str] | None = None
) -> TrainedRun:
    """Everything about a run that using it needs, checked before any tensor is built."""
    run_dir = find_run(path, checkpoint)
    checkpoint_path = run_dir / "checkpoints" / f"{checkpoint}.pt"
    if not checkpoint_path.is_file():
        other = "last" if checkpoint == "best" else "best"
        has_other = (run_dir / "checkpoints" / f"{other}.pt").is_file()
        hint = (
            f"; --checkpoint {other} uses checkpoints/{other}.pt"
            if has_other
            else (
                ": the run never finished a checkpoint"
                + (" (train.checkpoint: false)" if _no_checkpoints(run_dir) else "")
            )
        )
        raise ConfigError(f"{run_dir}: has no checkpoints/{checkpoint}.pt{hint}")
    summary = _read_json(run_dir / "summary.json", required=False)
    _check_code(summary)
    loaded = load_checkpoint(checkpoint_path)
    _check_config(run_dir, loaded)
    spec = resolve_config(
        refilled(load_config(run_dir / "config.yaml", overrides or []), loaded.get("filled", []))
    )
    data = _read_json(run_dir / "data.json", required=True)
    _check_data(run_dir, loaded)
    return TrainedRun(run_dir, spec, checkpoint, loaded, data, summary)


# What using a model depends on: its class and arguments, its data's preprocessing and split (the seed
# draws it), and its loss. (A resume may have changed the rest: the run length, the optimizer.)
_USED_SECTIONS = ("seed", "model", "data", "loss")


def _check_config(run_dir: Path, loaded: Checkpoint) -> None:
    """config.yaml as the checkpoint (whose bytes are checked) recorded it: an edited file would give
    another model, split or preprocessing in silence."""
    try:
        recorded = yaml.safe_load((run_dir / "config.yaml").read_text())
    except (OSError, yaml.YAMLError) as error:
        raise ConfigError(f"{run_dir / 'config.yaml'}: cannot be read: {error}") from None
    trained = {key: loaded["config"].get(key) for key in _USED_SECTIONS}
    found = {key: recorded.get(key) if isinstance(recorded, dict) else None for key in _USED_SECTIONS}
    differences = config_differences(trained, found)
    if differences:
        raise ConfigError(
            f"{run_dir / 'config.yaml'}: differs from the config the checkpoint was trained with "
            f"({'; '.join(differences[:5])}); restore it (the checkpoint's is the truth)"
        )


def _check_data(run_dir: Path, loaded: Checkpoint) -> None:
    """data.json (class names, normalization statistics, held-out rows) as the checkpoint vouches."""
    expected = loaded.get("data_sha256")
    if expected is None:
        return  # a checkpoint written before optcli recorded it
    path = run_dir / "data.json"
    if text_sha256(path.read_text(encoding="utf-8")) != expected:
        raise ConfigError(
            f"{path}: differs from what the run wrote (its SHA-256 is not the one the checkpoint holds): class "
            "names or normalization statistics edited would change every prediction; restore it"
        )


def _no_checkpoints(run_dir: Path) -> bool:
    """Whether the run was told to write none (`train.checkpoint: false`)."""
    try:
        recorded = yaml.safe_load((run_dir / "config.yaml").read_text())
        return recorded["train"]["checkpoint"] is False
    except (OSError, yaml.YAMLError, KeyError, TypeError):
        return False


def _read_json(path: Path, required: bool) -> dict[str, Any]:
    try:
        value = json.loads(path.read_text())
    except FileNotFoundError:
        if required:
            raise ConfigError(
                f"{path.parent}: has no {path.name}: the run did not get as far as its data"
            ) from None
        return {}
    except (OSError, ValueError) as error:
        raise ConfigError(f"{path}: cannot be read: {error}") from None
    if not isinstance(value, dict):
        raise ConfigError(f"{path}: is not a JSON object")
    return value


def _check_code(summary: dict[str, Any]) -> None:
    """The user's code the run imported: still there (or it is an error), unchanged (or it is said)."""
    recorded = summary.get("code_sha256") or {}
    moved = [file for file in recorded if not Path(file).is_file()]
    if moved:
        raise ConfigError(
            f"the run's code {', '.join(moved)} has moved or been deleted since the run; put it back where "
            "it was to rebuild the model"
        )
    changed = [file for file, digest in code_hashes(list(recorded)).items() if digest != recorded[file]]
    for file in changed:
        print(
            f"warning: {file} has changed since the run (its SHA-256 differs): the model is built from the "
            "code as it is now",
            file=sys.stderr,
        )
