"""Reading a config: the YAML file, then the changes layered onto it before it is validated: `--set
a.b=value` overrides, and the arms of a comparison (deep-merged onto their base). The same rule holds
for both: a section whose `name` changes starts afresh (an optimizer keeps its param_groups, which
describe the model); a scheduler's old arguments are carried over (`carried_over`) for the new class to
take those it accepts. An optimizer's are not: AdamW's decoupled weight_decay is another thing in SGD,
so an arm that switches class gets what it writes and the new class's defaults."""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from optcli.config.schema import LOADER_KEYS
from optcli.config.yaml_loader import load_yaml_mapping, parse_yaml
from optcli.errors import ConfigError
from optcli.name_matching import normalize_name

# Sections whose `name` picks a class: a new class starts the section afresh, so Adam's `betas`
# never end up on SGD. The data section keeps the keys that describe batching, not the dataset.
NAMED_SECTIONS = ("model", "data", "loss", "optimizer", "scheduler")
# An optimizer's param_groups describe the model (no decay for the biases, a lower rate for the head):
# they stay, checked against the new class.
KEPT_WHEN_RENAMED = {
    "data": LOADER_KEYS,
    "optimizer": ("param_groups",),
    "optimizer.part": ("params", "param_groups"),  # one of optimizer.parts: what it takes stays too
}
# Sections whose old arguments `carried_over` finds when the class changes: a scheduler's (gamma,
# T_max mostly mean the same across classes) are kept where the new class accepts them (see
# sections.take_carried); an optimizer's are only named in a note, as not carried over.
CARRIED_WHEN_RENAMED = ("optimizer", "scheduler")
_SECTION_KEYS = frozenset({"name", "interval", "monitor", "schedulers"})  # optcli's own, never carried


def option_overrides(settings: list[str] | None, values: dict[str, str | int | None]) -> list[str]:
    """`--set` strings, then dedicated command-line options (`--device`, `--out`, ...) as overrides of
    their keys; JSON is valid YAML, so each value arrives exactly as typed (a folder named 123 stays a
    string)."""
    return list(settings or []) + [
        f"{key}={json.dumps(value)}" for key, value in values.items() if value is not None
    ]


def parse_override(text: str) -> tuple[list[str], Any]:
    """`optimizer.lr=3e-4` -> (['optimizer', 'lr'], 0.0003); the value is read as YAML."""
    key, separator, value_text = text.partition("=")
    path = key.strip().split(".")
    if not separator or not all(path):
        raise ConfigError(f"--set '{text}': write KEY=VALUE, e.g. --set optimizer.lr=3e-4")
    return path, parse_yaml(value_text, f"--set {key.strip()}")


def apply_overrides(config: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """A copy of `config` with every override applied; section renames go first, so order is free."""
    result = copy.deepcopy(config)
    parsed = [parse_override(text) for text in overrides]
    renames = [(path, value) for path, value in parsed if _is_rename(path)]
    others = [(path, value) for path, value in parsed if not _is_rename(path)]
    for path, value in renames + others:
        _set_path(result, path, value)
    return result


def _is_rename(path: list[str]) -> bool:
    """`optimizer.name`, and a part's: `optimizer.parts.muon.name`."""
    section = len(path) == 2 and path[0] in NAMED_SECTIONS
    part = len(path) == 4 and path[:2] == ["optimizer", "parts"]
    return (section or part) and path[-1] == "name"


def _set_path(config: dict[str, Any], path: list[str], value: Any) -> None:
    dotted = ".".join(path)
    if _is_rename(path):
        parent: Any = config
        for key in path[:-2]:
            parent = parent.get(key) if isinstance(parent, dict) else None
        if isinstance(parent, dict):
            section = parent.get(path[-2])
            old = (
                {"name": section}
                if isinstance(section, str)
                else section
                if isinstance(section, dict)
                else {}
            )
            parent[path[-2]] = section_after_rename(
                "optimizer.part" if len(path) == 4 else path[0], old, str(value)
            )
    node: Any = config
    for depth, key in enumerate(path[:-1]):
        where = ".".join(path[: depth + 1])
        child = _child(node, key, where, dotted)
        if child is None or (isinstance(child, str) and key in NAMED_SECTIONS):
            # `loss: mse` then `--set loss.reduction=sum` makes the shorthand a mapping.
            child = {"name": child} if isinstance(child, str) else {}
            _assign(node, key, child, dotted)
        elif not isinstance(child, dict | list):
            raise ConfigError(f"--set {dotted}: '{where}' is {child!r}, not a mapping, so it has no keys")
        node = child
    _assign(node, path[-1], value, dotted)


def _child(node: Any, key: str, where: str, dotted: str) -> Any:
    if isinstance(node, list):
        return node[_index(node, key, where, dotted)]
    return node.get(key)


def _assign(node: Any, key: str, value: Any, dotted: str) -> None:
    if isinstance(node, list):
        node[_index(node, key, key, dotted)] = value
    else:
        node[key] = value


def _index(items: list[Any], key: str, where: str, dotted: str) -> int:
    if not key.isdigit() or int(key) >= len(items):
        raise ConfigError(f"--set {dotted}: '{where}' must be a list index from 0 to {len(items) - 1}")
    return int(key)


def merge_arm(base: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    """`base` deep-merged with `changes`; a named section whose class changes is replaced, not merged."""
    merged = copy.deepcopy(base)
    for key, value in changes.items():
        old = merged.get(key)
        if key in NAMED_SECTIONS and isinstance(old, str | dict) and isinstance(value, str | dict):
            old_section = {"name": old} if isinstance(old, str) else old
            new_section = {"name": value} if isinstance(value, str) else value
            if "name" in new_section:
                old_section = section_after_rename(key, old_section, new_section["name"])
            elif key == "optimizer" and "parts" in new_section:
                old_section = _parts_after_change(old_section, new_section["parts"])
            merged[key] = _deep_merge(old_section, new_section)
        elif isinstance(old, dict) and isinstance(value, dict):
            merged[key] = _deep_merge(old, value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def section_after_rename(section: str, old: dict[str, Any], new_name: Any) -> dict[str, Any]:
    """A named section given a name: the same class keeps everything; another class starts afresh,
    keeping only what KEPT_WHEN_RENAMED keeps (a data section's batching keys)."""
    if _same_name(old.get("name"), new_name):
        return old
    return {key: old[key] for key in KEPT_WHEN_RENAMED.get(section, ()) if key in old}


def _parts_after_change(old: dict[str, Any], new_parts: Any) -> dict[str, Any]:
    """An arm's optimizer.parts merged onto the base's: one optimizer becoming parts starts afresh; a
    part whose class changes keeps only what describes the model (its params and param_groups)."""
    if "parts" not in old or not isinstance(old["parts"], dict) or not isinstance(new_parts, dict):
        return {}
    parts = dict(old["parts"])
    for name, new_part in new_parts.items():
        old_part = parts.get(name)
        if isinstance(old_part, dict) and isinstance(new_part, dict) and "name" in new_part:
            parts[name] = section_after_rename("optimizer.part", old_part, new_part["name"])
    return {**old, "parts": parts}


def _same_name(old: Any, new: Any) -> bool:
    return isinstance(old, str) and isinstance(new, str) and normalize_name(old) == normalize_name(new)


def _deep_merge(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    merged = copy.deepcopy(old)
    for key, value in new.items():
        if isinstance(merged.get(key), dict) and isinstance(value, dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def carried_over(before: dict[str, Any], after: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """For each optimizer or scheduler whose class changed between two mappings, the old class's
    arguments that the new section does not set itself."""
    carried = {}
    for section in CARRIED_WHEN_RENAMED:
        old, new = before.get(section), after.get(section)
        if not isinstance(old, dict) or not isinstance(new, dict | str):
            continue
        new_section = {"name": new} if isinstance(new, str) else new
        if not _same_name(old.get("name"), new_section.get("name")):
            arguments = {
                key: value for key, value in old.items() if key not in _SECTION_KEYS | set(new_section)
            }
            if arguments:
                carried[section] = arguments
    return carried


@dataclass(frozen=True)
class RawConfig:
    """A config mapping with `--set` applied, and where it came from (for relative paths and the name)."""

    values: dict[str, Any]
    base_dir: Path
    default_name: str
    carried: dict[str, dict[str, Any]] = field(default_factory=dict)  # see carried_over


def load_config(path: Path, overrides: list[str] | None = None) -> RawConfig:
    """Read a config file and apply `--set KEY=VALUE` overrides; nothing is validated yet."""
    original = load_yaml_mapping(path)
    values = apply_overrides(original, overrides or [])
    return RawConfig(values, path.resolve().parent, path.stem, carried_over(original, values))


def write_with_overrides(source: Path, target: Path, overrides: list[str]) -> None:
    """A copy of a config file with `--set` overrides applied (its comments are not kept)."""
    import yaml

    values = apply_overrides(load_yaml_mapping(source), overrides)
    header = f"# {source.name} with {', '.join(overrides)} (written by optcli find-lr)\n"
    try:
        target.write_text(header + yaml.safe_dump(values, sort_keys=False, allow_unicode=True))
    except OSError as error:
        raise ConfigError(f"--apply: cannot write {target}: {error.strerror or error}") from None
