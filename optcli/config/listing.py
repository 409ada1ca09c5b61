"""`optcli list`: every registered name with its parameters and their defaults."""

from __future__ import annotations

import inspect
from dataclasses import dataclass

from rich.table import Table

from optcli.components.registry import Entry, Registry
from optcli.components.signature import HIDDEN, REQUIRED, describe_type, read_signature
from optcli.errors import ConfigError
from optcli.name_matching import normalize_name, unknown_name_message


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


KINDS = ("optimizers", "schedulers", "models", "datasets", "losses")


def kind_named(text: str) -> str:
    """The kind a user means: `optimizer`, `Optimizers` and `optim` all name optimizers."""
    for kind in KINDS:
        if normalize_name(kind).startswith(normalize_name(text)[:-1] or "?"):
            return kind
    raise ConfigError(unknown_name_message("kind", text, KINDS))


def listing_table(kind: str) -> Table:
    """Every name of one kind with its parameters and defaults, as `optcli list` shows it."""
    table = Table(title=kind, title_justify="left", show_lines=False)
    table.add_column("name", style="bold", no_wrap=True)
    table.add_column("parameters (default)")
    table.add_column("note")
    for entry in list_entries(kind):
        table.add_row(entry.name, entry.parameters, entry.note)
    return table


def list_entries(kind: str) -> list[ListedEntry]:
    registry = registries()[kind]
    return [_describe(entry, registry.supplied_by_code | HIDDEN) for entry in registry.entries()]


def _describe(entry: Entry, skipped: frozenset[str]) -> ListedEntry:
    try:
        signature = read_signature(entry.target)
    except (TypeError, ValueError):
        return ListedEntry(entry.name, "?", entry.unavailable or entry.summary)
    words = []
    for name, parameter in signature.parameters.items():
        if name in skipped:
            continue
        if name in entry.presets:
            words.append(f"{name}={entry.presets[name]!r}")
        elif parameter.default is REQUIRED:
            hint = describe_type(signature.hints[name]) if name in signature.hints else ""
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
