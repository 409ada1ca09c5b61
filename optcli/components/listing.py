"""`optcli list`: every registered name with its parameters and their defaults."""

from __future__ import annotations

import inspect
from dataclasses import dataclass

from optcli.components.registry import Entry, Registry
from optcli.components.signature import REQUIRED, describe_type, read_signature

# Arguments optcli supplies itself, per kind: not something to put in a config.
_SUPPLIED = {"optimizers": {"params"}, "schedulers": {"optimizer"}, "losses": {"size_average", "reduce"}}
_HIDDEN = {"last_epoch", "verbose"}


@dataclass(frozen=True)
class ListedEntry:
    name: str
    parameters: str  # "lr=0.001, betas=[0.9, 0.999], ..."
    note: str  # a summary, or why a config cannot use it


def registries() -> dict[str, Registry]:
    from optcli.components import models, optimizers, schedulers
    from optcli.components.losses import LOSSES
    from optcli.data.registry import DATASETS

    return {
        "optimizers": optimizers.OPTIMIZERS,
        "schedulers": schedulers.SCHEDULERS,
        "models": models.MODELS,
        "datasets": DATASETS,
        "losses": LOSSES,
    }


def list_entries(kind: str) -> list[ListedEntry]:
    skipped = _SUPPLIED.get(kind, set()) | _HIDDEN
    return [_describe(entry, skipped) for entry in registries()[kind].entries()]


def _describe(entry: Entry, skipped: set[str]) -> ListedEntry:
    try:
        parameters = read_signature(entry.target).parameters
    except (TypeError, ValueError):
        return ListedEntry(entry.name, "?", entry.unavailable or entry.summary)
    words = []
    for name, parameter in parameters.items():
        if name in skipped:
            continue
        if name in entry.presets:
            words.append(f"{name}={entry.presets[name]!r}")
        elif parameter.default is REQUIRED:
            hint = describe_type(parameter.annotation) if parameter.annotation is not None else ""
            words.append(f"{name} (required{': ' + hint if hint else ''})")
        else:
            words.append(f"{name}={_show_default(parameter.default)}")
    note = f"unavailable: {entry.unavailable}" if entry.unavailable else entry.summary
    return ListedEntry(entry.name, ", ".join(words), note)


def _show_default(value: object) -> str:
    if isinstance(value, tuple):
        value = list(value)
    if inspect.isclass(value) or callable(value):
        return getattr(value, "__name__", repr(value))
    return repr(value) if isinstance(value, str) else str(value)
