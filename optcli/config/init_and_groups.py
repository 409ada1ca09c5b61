"""Parts of a run's description that the model and optimizer sections add: trained weights to start
from (`model.init`), what the loss sees of the model's output (`model.output`), and parameter groups
(`optimizer.param_groups`). Plain data and pure functions; torch loads only to read weights."""

from __future__ import annotations

import fnmatch
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from optcli.components.signature import plain


@dataclass(frozen=True)
class ModelInit:
    """Trained weights the model starts from: the file (absolute), and whether every key must fit."""

    path: str
    strict: bool
    source: str  # as the config gave it (a run directory, or a file)
    checkpoint: Literal["best", "last"]

    def record(self) -> dict[str, Any]:
        return {"init": self.source, "init_checkpoint": self.checkpoint, "init_strict": self.strict}

    def state_dict(self) -> dict[str, Any]:
        """The model's weights in the file: a state dict, or an optcli checkpoint's `model`."""
        import torch

        from optcli.integrity import damage_in

        damage = damage_in(Path(self.path)) if zipfile.is_zipfile(self.path) else None
        if damage is not None:
            raise ValueError(f"the file is damaged: {damage}")
        loaded = torch.load(self.path, map_location="cpu", weights_only=True)
        return (
            dict(loaded["model"])
            if isinstance(loaded, dict) and "format" in loaded and "model" in loaded
            else dict(loaded)
        )


@dataclass(frozen=True)
class ParamGroup:
    """Parameters chosen by glob patterns on their names, and the optimizer arguments they take."""

    patterns: tuple[str, ...]
    arguments: dict[str, Any]

    def record(self) -> dict[str, Any]:
        return {"params": list(self.patterns), **plain(self.arguments)}


def group_indices(names: list[str], groups: tuple[ParamGroup, ...]) -> list[int]:
    """For each parameter name, its group: the first whose pattern matches it (1, 2, ...), else 0 (the
    default group, with the optimizer section's own arguments)."""
    return [
        next(
            (
                index
                for index, group in enumerate(groups, 1)
                if any(fnmatch.fnmatchcase(name, p) for p in group.patterns)
            ),
            0,
        )
        for name in names
    ]


def optimizer_parameters(
    named: list[tuple[str, Any]], groups: tuple[ParamGroup, ...], every_group: dict[str, Any] | None = None
) -> list[Any]:
    """What the optimizer is given: the parameters themselves without groups; else the default group
    first (so param_groups[0], whose rate metrics.csv logs, is the section's own), then each group.
    `every_group`: keys the class requires in each group (optimizers.every_group_keys), unless the
    group sets them."""
    if not groups and not every_group:
        return [parameter for _, parameter in named]
    indices = group_indices([name for name, _ in named], groups)
    default = {
        "params": [parameter for (_, parameter), index in zip(named, indices, strict=True) if index == 0],
        **(every_group or {}),
    }
    return [default] + [
        {
            "params": [p for (_, p), index in zip(named, indices, strict=True) if index == number],
            **(every_group or {}),
            **group.arguments,
        }
        for number, group in enumerate(groups, 1)
    ]
