"""What a comparison compares: every arm's resolved optimizer (its parts) and schedule, side by side,
with the arguments that differ between arms marked. `optcli check` prints it for a compare file, so
that a reader sees exactly what each arm runs, defaults included."""

from __future__ import annotations

from typing import Any

from optcli.config.spec import RunSpec

COMPARED_SECTIONS = ("optimizer", "scheduler", "clip")
DIFFERS = "*"  # the mark of a row whose value is not the same in every arm
ABSENT = "-"


def flatten(values: Any, prefix: str = "") -> dict[str, Any]:
    """{'optimizer': {'lr': 0.1}} -> {'optimizer.lr': 0.1}; lists of mappings by index."""
    if isinstance(values, dict):
        flat: dict[str, Any] = {}
        for key, value in values.items():
            flat.update(flatten(value, f"{prefix}{key}."))
        return flat
    if isinstance(values, list) and any(isinstance(item, dict) for item in values):
        flat = {}
        for index, item in enumerate(values):
            flat.update(flatten(item, f"{prefix}{index}."))
        return flat
    return {prefix[:-1]: values}


def arms_side_by_side(specs: dict[str, RunSpec]) -> list[str]:
    """A row per key of the arms' optimizer, scheduler and clip sections (as config.yaml records them),
    a column per arm; rows whose values differ marked with DIFFERS. Empty for a single config."""
    if len(specs) < 2:
        return []
    flat = {
        arm: flatten({key: spec.resolved[key] for key in COMPARED_SECTIONS if key in spec.resolved})
        for arm, spec in specs.items()
    }
    keys: list[str] = []
    for values in flat.values():
        keys += [key for key in values if key not in keys]
    rows = [["", "key", *specs]]
    for key in keys:
        cells = [_shown(values.get(key, ABSENT)) for values in flat.values()]
        rows.append([DIFFERS if len(set(cells)) > 1 else "", key, *cells])
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() for row in rows
    ]
    return [*lines, f"({DIFFERS}: differs between arms)"]


def _shown(value: Any) -> str:
    if isinstance(value, list):
        return "[" + ", ".join(_shown(item) for item in value) + "]"
    return ABSENT if value is ABSENT else str(value)
