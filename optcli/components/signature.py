"""Binding a config's keyword arguments to the real signature of the class they are for.

The YAML holds constructor arguments verbatim, so the class's own signature is the schema: an
argument it does not take, a required one left out, or a value its type hint rejects is reported
here, before anything is built. Values are checked by pydantic against the hints torch writes.
"""

from __future__ import annotations

import collections.abc
import enum
import functools
import inspect
import json
import math
import types
import typing
from dataclasses import dataclass
from typing import Any, Literal, Union

from pydantic import ConfigDict, TypeAdapter, ValidationError

from optcli.name_matching import did_you_mean

REQUIRED = inspect.Parameter.empty

# Arguments that are never a config's business: resume bookkeeping and deprecated switches. They are
# neither listed, nor recorded in config.yaml.
HIDDEN = frozenset({"last_epoch", "verbose", "size_average", "reduce"})


class TensorValue(list):  # type: ignore[type-arg]
    """A YAML list of numbers given where the class takes a tensor (a loss's class `weight`,
    `pos_weight`): recorded as the list, built into a tensor (moved to the run's device with the module)."""


@dataclass(frozen=True)
class Signature:
    parameters: dict[str, inspect.Parameter]  # keyword parameters only
    hints: dict[str, Any]  # resolved type hints, where the target has them
    accepts_any_keyword: bool  # the target takes **kwargs


@functools.cache
def read_signature(target: Any) -> Signature:
    """The keyword parameters of a class or function, with their type hints resolved."""
    signature = inspect.signature(target)
    keywords = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    parameters = {p.name: p for p in signature.parameters.values() if p.kind in keywords}
    accepts_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in signature.parameters.values())
    function = target.__init__ if inspect.isclass(target) else target
    try:
        # torch names some hints (Callable, Iterable) only under TYPE_CHECKING: typing's names fill in.
        hints = typing.get_type_hints(function, localns=vars(typing))
    except Exception:
        hints = {}
    return Signature(parameters, {key: hints[key] for key in parameters if key in hints}, accepts_any)


def bind_arguments(
    target: Any,
    arguments: dict[str, Any],
    *,
    where: str,
    display_name: str,
    supplied_by_code: frozenset[str] = frozenset(),
    partial: bool = False,
    reserved: frozenset[str] = frozenset(),
) -> tuple[dict[str, Any], list[str]]:
    """Bind `arguments` to `target`'s signature; return the values as the target takes them (YAML
    lists become tuples where it asks for a tuple) and every problem, one line each. `partial`: some
    of the arguments only (a parameter group's), so none is required. `reserved`: names the config
    section uses itself, so that a required one must be given under `args`."""
    signature = read_signature(target)
    accepted = [name for name in signature.parameters if name not in supplied_by_code | HIDDEN]
    problems = []
    bound: dict[str, Any] = {}
    for key, value in arguments.items():
        parameter = signature.parameters.get(key)
        if key in supplied_by_code:
            problems.append(f"{where}.{key}: optcli supplies '{key}' to {display_name} itself; remove it")
        elif parameter is None and not signature.accepts_any_keyword:
            problems.append(
                f"{where}.{key}: {display_name} has no argument '{key}'{did_you_mean(key, accepted)}; "
                f"it accepts: {', '.join(accepted) or 'no arguments'}"
            )
        elif key in signature.hints and _takes_tensor(signature.hints[key]) and _numbers(value):
            bound[key] = TensorValue(value)
        elif key in signature.hints:
            try:
                validated = _adapter(signature.hints[key]).validate_json(json.dumps(value), strict=True)
                # The value as given (an integer stays one, for config.yaml), a tuple where one is asked for.
                bound[key] = tuple(value) if isinstance(validated, tuple) else value
            except (ValidationError, TypeError, ValueError):
                problems.append(
                    f"{where}.{key}: {display_name} expects {describe_type(signature.hints[key])} "
                    f"for '{key}', got {value!r} ({type(value).__name__})"
                )
        else:
            bound[key] = value
        if key in bound and _non_finite(value) and not _non_finite(getattr(parameter, "default", None)):
            del bound[key]
            problems.append(
                f"{where}.{key}: {display_name} needs a finite number for '{key}', got {value!r} "
                "(YAML reads .nan, .inf and numbers beyond 1e308 as such)"
            )
    for name, parameter in signature.parameters.items():
        if partial:
            break
        if parameter.default is REQUIRED and name not in arguments and name not in supplied_by_code:
            add = f"{where}.args ('{name}' beside it is optcli's own key)" if name in reserved else where
            problems.append(f"{where}.{name}: {display_name} requires '{name}'; add it to {add}")
    return bound, problems


def _non_finite(value: Any) -> bool:
    """A float that is nan or infinite, anywhere in a value (a list of betas, say). An argument whose
    default is such a value (max_norm=inf) may take one."""
    if isinstance(value, float):
        return not math.isfinite(value)
    if isinstance(value, list | tuple):
        return any(_non_finite(item) for item in value)
    if isinstance(value, dict):
        return any(_non_finite(item) for item in value.values())
    return False


def _takes_tensor(hint: Any) -> bool:
    options = typing.get_args(hint) if typing.get_origin(hint) in (Union, types.UnionType) else (hint,)
    return any(
        getattr(option, "__name__", "") == "Tensor" and option.__module__.startswith("torch")
        for option in options
    )


def _numbers(value: Any) -> bool:
    """A non-empty list of numbers, or of such lists."""
    if not isinstance(value, list) or not value:
        return False
    return all(
        _numbers(item)
        if isinstance(item, list)
        else isinstance(item, int | float) and not isinstance(item, bool)
        for item in value
    )


@functools.cache
def _adapter(hint: Any) -> TypeAdapter[Any]:
    """A validator for a type hint. Values arrive as JSON (what YAML can hold), in strict mode: a
    string is never taken for a number, a JSON array may stand for a tuple, and a hint that only a live
    object can meet (a Tensor, a Module, a function) rejects every value."""
    return TypeAdapter(_eager(hint), config=ConfigDict(arbitrary_types_allowed=True))


def _eager(hint: Any) -> Any:
    """`Iterable[int]` as `list[int]`: pydantic validates an Iterable lazily, a list at once."""
    origin, arguments = typing.get_origin(hint), typing.get_args(hint)
    if origin in (Union, types.UnionType):
        return Union[tuple(_eager(option) for option in arguments)]  # noqa: UP007
    if origin is collections.abc.Iterable:
        return list[_eager(arguments[0])] if arguments else list  # type: ignore[misc]
    return hint


def describe_type(hint: Any) -> str:
    """Type hints in words: `float | Tensor` -> 'a number', `tuple[float, float]` -> 'a list of 2 values'."""
    return " or ".join(dict.fromkeys(_describe(hint)))


def _describe(hint: Any) -> list[str]:
    origin, arguments = typing.get_origin(hint), typing.get_args(hint)
    if origin in (Union, types.UnionType):
        return [word for option in arguments for word in _describe(option)]
    if origin is Literal:
        return ["one of " + ", ".join(repr(option) for option in arguments)]
    if origin is tuple and arguments and arguments[-1] is not Ellipsis:
        return [f"a list of {len(arguments)} values"]
    if origin in (tuple, list, collections.abc.Sequence, collections.abc.Iterable):
        return ["a list"]
    simple = {bool: "true or false", int: "an integer", float: "a number", str: "a string", dict: "a mapping"}
    if hint in simple:
        return [simple[hint]]
    if hint is None or hint is type(None):
        return ["null"]
    if _takes_tensor(hint):
        return ["a list of numbers"]
    if inspect.isclass(hint) and hint.__module__.startswith("torch"):
        return []  # a live torch object: not something a config can give
    return [getattr(hint, "__name__", str(hint))]


def recorded_arguments(
    target: Any, arguments: dict[str, Any], supplied_by_code: frozenset[str] = frozenset()
) -> dict[str, Any]:
    """The arguments with every plain default the signature adds, in signature order, as YAML holds
    them: what config.yaml records, and what `optcli train` accepts again."""
    try:
        parameters = read_signature(target).parameters
    except (TypeError, ValueError):
        parameters = {}
    recorded = {}
    for key, parameter in parameters.items():
        if key in supplied_by_code or key in HIDDEN:
            continue
        if key in arguments:
            recorded[key] = plain(arguments[key])
        elif (
            parameter.default is not REQUIRED
            and parameter.default is not None
            and _is_plain(parameter.default)
        ):
            recorded[key] = plain(parameter.default)
    recorded.update({key: plain(value) for key, value in arguments.items() if key not in recorded})
    return recorded


def _is_plain(value: Any) -> bool:
    if isinstance(value, enum.Enum):  # an IntEnum is an int, but YAML cannot write it
        return False
    if isinstance(value, bool | int | float | str) or value is None:
        return True
    return isinstance(value, list | tuple) and all(_is_plain(item) for item in value)


def plain(value: Any) -> Any:
    """Tuples as lists, recursively: what YAML writes and reads back."""
    if isinstance(value, tuple | list):
        return [plain(item) for item in value]
    if isinstance(value, dict):
        return {key: plain(item) for key, item in value.items()}
    return value
