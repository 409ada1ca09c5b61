"""The checkpoint file: what it holds (Checkpoint: everything needed to continue a run exactly),
and reading one safely (its CRCs checked, torch.load with weights_only). When checkpoints are written
is checkpointer.py's; putting one back into a session, restoring.py's.

A checkpoint holds the model, optimizer and scheduler, every random generator's state (Python,
NumPy, torch, CUDA, the data order's), the loop's position, the resolved config, and how long each
CSV file was at that point, with the SHA-256 of those bytes.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, NotRequired, TypedDict

import torch

from optcli.config.side_by_side import flatten
from optcli.errors import ConfigError
from optcli.integrity import damage_in
from optcli.train.sinks.summary import SummaryState

FORMAT = 1


def data_json(description: dict[str, Any]) -> str:
    """The text of a run's data.json."""
    return json.dumps(description, indent=2) + "\n"


def text_sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def load_checkpoint(path: Path) -> Checkpoint:
    """Read a checkpoint with torch.load(weights_only=True), after checking every byte against the
    CRCs recorded when it was written; a missing, damaged or foreign file is a ConfigError."""
    if not path.is_file():
        raise ConfigError(
            f"{path}: no checkpoint; runs write checkpoints/last.pt at every epoch's end "
            "(train.checkpoint_every) and when interrupted"
        )
    damage = damage_in(path)
    if damage is not None:
        raise DamagedCheckpoint(f"{path}: the checkpoint is damaged: {damage}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        # Every entry matched its CRC, so the damage is in the archive's directory (which Python's
        # zipfile reads past, and torch's reader does not): damaged all the same, with a fallback.
        reason = str(error).splitlines()[0]
        raise DamagedCheckpoint(f"{path}: the checkpoint is damaged: not readable ({reason})") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ConfigError(f"{path}: not an optcli checkpoint (format {FORMAT})")
    return payload  # type: ignore[return-value]


class DamagedCheckpoint(ConfigError):
    """A checkpoint file whose bytes are not those written (a disk's rot, a copy cut short)."""


class Checkpoint(TypedDict):
    """What a checkpoint file holds (plain containers and tensors only: loadable with weights_only)."""

    format: int
    model: dict[str, Any]
    optimizer: dict[str, Any]
    scheduler: dict[str, Any] | None
    random: dict[str, Any]  # every generator's state
    data_order: torch.Tensor  # the state that draws the current (mid-epoch) or next epoch's order
    loop: dict[str, Any]  # LoopState.to_dict()
    config: dict[str, Any]  # the resolved config the run was started with
    csv_sizes: dict[str, int]  # where a resumed run cuts its CSV files back to
    summary: SummaryState
    filled: list[str]  # the scheduler's run-length arguments optcli filled in (SchedulerSpec.filled)
    scaler: NotRequired[dict[str, Any]]  # fp16's GradScaler (its scale and growth counter)
    # The SHA-256 of the run's data.json (class names, normalization statistics, held-out rows): what
    # predict, evaluate and export check the file against before they trust it.
    data_sha256: NotRequired[str]
    # The SHA-256 of each CSV file's first csv_sizes bytes: what a resume and a reuse of the run's rows
    # check the file against (run_files.py). (Checkpoints of optcli 0.x before it have none.)
    csv_sha256: NotRequired[dict[str, str]]
    # torch's intra-op threads the run trained with: another count sums in another order, so a resume
    # with another one is a change (train/resume.py).
    threads: NotRequired[int]
    # With an optimizer that has a train and an eval mode (schedule-free), `model` holds the eval-mode
    # weights (those every metric judged) and this the training-mode weights a resume continues from.
    training_model: NotRequired[dict[str, Any]]


def config_differences(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """'optimizer.lr: 0.001 -> 0.0003' for every key that differs (where the files go does not count)."""
    flat_old, flat_new = flatten(old), flatten(new)
    differences = []
    for key in sorted(set(flat_old) | set(flat_new)):
        if key.startswith("output.") or key in ("name", "train.threads"):  # where and how fast, not what
            continue
        before, after = flat_old.get(key, "(absent)"), flat_new.get(key, "(absent)")
        if before != after:
            differences.append(f"{key}: {before!r} -> {after!r}")
    return differences
