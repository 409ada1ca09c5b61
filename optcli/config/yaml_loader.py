"""A strict YAML loader: YAML 1.2 floats (`1e-3`), no duplicate keys, errors with line and column,
and bounds on what a file may make a reader build: its size, its nesting, and what its aliases
expand to (a "billion laughs" file of a kilobyte expands to gigabytes)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from optcli.errors import ConfigError

# PyYAML follows YAML 1.1, where a float needs a dot: `1e-3` would be the string "1e-3".
# This is the YAML 1.2 core-schema float, which every other YAML reader uses.
_FLOAT_1_2 = re.compile(
    r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
    |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
    |\.[0-9][0-9_]*(?:[eE][-+]?[0-9]+)?
    |[-+]?\.(?:inf|Inf|INF)
    |\.(?:nan|NaN|NAN))$""",
    re.X,
)


# A config is a few kilobytes; these bounds are far above any real one and far below harm.
MAX_BYTES = 1 << 20
MAX_NODES = 100_000  # scalars, lists and mappings, every alias counted as what it expands to
MAX_DEPTH = 64


class _StrictLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """SafeLoader (libyaml's, where PyYAML has it) with YAML 1.2 floats and duplicate keys rejected."""


_StrictLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:float"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_StrictLoader.add_implicit_resolver("tag:yaml.org,2002:float", _FLOAT_1_2, list("-+0123456789."))


def _construct_mapping(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    seen: dict[Any, yaml.Mark] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=True)  # type: ignore[no-untyped-call]
        if key in seen:
            first = seen[key]
            raise yaml.constructor.ConstructorError(
                None,
                None,
                f"duplicate key '{key}' (first defined on line {first.line + 1})",
                key_node.start_mark,
            )
        seen[key] = key_node.start_mark
    return loader.construct_mapping(node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def parse_yaml(text: str, source: str) -> Any:
    """Parse YAML text; `source` names it in error messages (a path, or `--set key`)."""
    if len(text) > MAX_BYTES:
        raise ConfigError(f"{source}: {len(text):,} characters; a config is at most {MAX_BYTES:,}")
    loader = _StrictLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _check_bounds(node, source)
        return loader.construct_document(node)
    except RecursionError:
        raise ConfigError(f"{source}: nested too deeply (a config nests a few levels)") from None
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark else source
        problem = error.problem or error.context or "invalid YAML"
        raise ConfigError(f"{where}: {problem}") from None
    except yaml.YAMLError as error:
        raise ConfigError(f"{source}: invalid YAML: {error}") from None
    finally:
        loader.dispose()


def _check_bounds(root: yaml.Node, source: str) -> None:
    """Walk the document as it would be built, aliases expanded, and stop at the first bound passed."""
    stack: list[tuple[yaml.Node, int]] = [(root, 1)]
    built = 0
    while stack:
        node, depth = stack.pop()
        built += 1
        if built > MAX_NODES:
            raise ConfigError(
                f"{source}: builds more than {MAX_NODES:,} values (its aliases expand without bound?); a config "
                "is far smaller"
            )
        if depth > MAX_DEPTH:
            raise ConfigError(
                f"{source}:{node.start_mark.line + 1}: nested more than {MAX_DEPTH} levels deep"
            )
        if isinstance(node, yaml.SequenceNode):
            stack.extend((child, depth + 1) for child in node.value)
        elif isinstance(node, yaml.MappingNode):
            stack.extend((part, depth + 1) for pair in node.value for part in pair)


def load_yaml_mapping(path: Path) -> dict[str, Any]:
    """Read a YAML file whose top level must be a non-empty mapping."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a directory, not a config file") from None
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"{path}: cannot read: {error}") from None
    data = parse_yaml(text, str(path))
    if data is None:
        raise ConfigError(f"{path}: the file is empty; a config is a mapping with model, data and optimizer")
    if not isinstance(data, dict):
        raise ConfigError(
            f"{path}: the top level must be a mapping of keys (model:, data:, optimizer:, ...), "
            f"not a {type(data).__name__}"
        )
    return data
