"""Helpers shared by the resolvers of a config's sections: looking names up, checking arguments, and
collecting every problem so that one message lists them all."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from optcli.components.registry import Entry, Registry
from optcli.components.signature import check_arguments
from optcli.errors import ConfigError


class Problems:
    """Collects problems so that one message lists them all."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def add_if(self, problem: str | None) -> None:
        if problem is not None:
            self.lines.append(problem)

    def add(self, where: str, error: ConfigError) -> None:
        for problem in error.problems:
            self.lines.append(problem if problem.startswith(where) else f"{where}.{problem}")


def as_section(value: Any, where: str, problems: Problems) -> dict[str, Any] | None:
    """`adam` is shorthand for `{name: adam}`; a section must name its class."""
    if value is None:
        return None
    if isinstance(value, str):
        return {"name": value}
    if not isinstance(value, dict):
        problems.lines.append(f"{where}: expected a mapping with a name, got {value!r}")
        return None
    if not isinstance(value.get("name"), str):
        problems.lines.append(f"{where}.name: required: the registry name or import path of the {where}")
        return None
    return dict(value)


def lookup(registry: Registry, name: str, where: str, base_dir: Path, problems: Problems) -> Entry | None:
    try:
        return registry.get(name, base_dir)
    except ConfigError as error:
        problems.lines += [f"{where}.name: {problem}" for problem in error.problems]
        return None


def checked(
    entry: Entry,
    arguments: dict[str, Any],
    where: str,
    problems: Problems,
    supplied_by_code: frozenset[str] = frozenset(),
) -> dict[str, Any] | None:
    try:
        converted, found = check_arguments(
            entry.target,
            {**entry.presets, **arguments},
            where=where,
            display_name=display_name(entry),
            supplied_by_code=supplied_by_code,
        )
    except (TypeError, ValueError) as error:  # no signature to read (a builtin, say)
        problems.lines.append(f"{where}.name: cannot read the arguments of {entry.name}: {error}")
        return None
    problems.lines += found
    return None if found else converted


def display_name(entry: Entry) -> str:
    return getattr(entry.target, "__name__", entry.name) if ":" not in entry.name else entry.name


def is_subclass(target: Any, classes: tuple[type, ...]) -> bool:
    return isinstance(target, type) and issubclass(target, classes)


def portable_name(name: str, base_dir: Path) -> str:
    """A `file.py:Class` name made absolute, so the recorded config works from the run directory."""
    module_part, separator, attribute = name.rpartition(":")
    if separator and module_part.endswith(".py"):
        return f"{(base_dir / module_part).resolve()}:{attribute}"
    return name
