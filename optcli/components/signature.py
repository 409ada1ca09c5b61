"""Checking a config's keyword arguments against the real signature of the class they are for.

The YAML holds constructor arguments verbatim, so the class's own signature is the schema: an
argument it does not take, a required one left out, or a value of the wrong type is reported here,
before anything is built.
"""

from __future__ import annotations

import collections.abc
import inspect
import types
import typing
from dataclasses import dataclass
from typing import Any, Literal, Union

from optcli.names import did_you_mean

REQUIRED = inspect.Parameter.empty


@dataclass(frozen=True)
class ParameterInfo:
    """One keyword a class accepts: its name, its type hint (None when unknown) and its default."""

    name: str
    annotation: Any
    default: Any  # REQUIRED when the argument must be given


@dataclass(frozen=True)
class Signature:
    parameters: dict[str, ParameterInfo]
    accepts_any_keyword: bool  # the target takes **kwargs


def read_signature(target: Any) -> Signature:
    """The keyword parameters of a class or function, with type hints resolved where possible."""
    signature = inspect.signature(target)
    hints = _type_hints(target)
    parameters = {}
    accepts_any = False
    for parameter in signature.parameters.values():
        if parameter.kind is inspect.Parameter.VAR_KEYWORD:
            accepts_any = True
            continue
        if parameter.kind in (
            inspect.Parameter.VAR_POSITIONAL,
            inspect.Parameter.POSITIONAL_ONLY,
        ):
            continue
        annotation = hints.get(parameter.name)
        parameters[parameter.name] = ParameterInfo(parameter.name, annotation, parameter.default)
    return Signature(parameters, accepts_any)


def _type_hints(target: Any) -> dict[str, Any]:
    """Resolved hints; one unresolvable hint (torch's CyclicLR names `Callable` lazily) costs only itself."""
    function = target.__init__ if inspect.isclass(target) else target
    try:
        return typing.get_type_hints(function)
    except Exception:
        pass
    namespace = {**vars(typing), **getattr(inspect.getmodule(function), "__dict__", {})}
    hints = {}
    for name, annotation in getattr(function, "__annotations__", {}).items():
        if isinstance(annotation, str):
            try:
                annotation = eval(annotation, namespace)
            except Exception:
                continue
        hints[name] = annotation
    return hints


def check_arguments(
    target: Any,
    arguments: dict[str, Any],
    *,
    where: str,
    display_name: str,
    supplied_by_code: frozenset[str] = frozenset(),
) -> tuple[dict[str, Any], list[str]]:
    """Bind `arguments` to `target`'s signature; return the converted arguments and every problem."""
    signature = read_signature(target)
    accepted = [name for name in signature.parameters if name not in supplied_by_code]
    problems = []
    converted = {}
    for key, value in arguments.items():
        parameter = signature.parameters.get(key)
        if key in supplied_by_code:
            problems.append(f"{where}.{key}: optcli supplies '{key}' to {display_name} itself; remove it")
        elif parameter is None and not signature.accepts_any_keyword:
            problems.append(
                f"{where}.{key}: {display_name} has no argument '{key}'{did_you_mean(key, accepted)}; "
                f"it accepts: {', '.join(accepted) or 'no arguments'}"
            )
        elif parameter is not None and parameter.annotation is not None:
            if not value_matches(parameter.annotation, value):
                problems.append(
                    f"{where}.{key}: {display_name} expects {describe_type(parameter.annotation)} "
                    f"for '{key}', got {value!r} ({type(value).__name__})"
                )
            else:
                converted[key] = convert_value(parameter.annotation, value)
        else:
            converted[key] = value
    for name, parameter in signature.parameters.items():
        if parameter.default is REQUIRED and name not in arguments and name not in supplied_by_code:
            problems.append(f"{where}.{name}: {display_name} requires '{name}'; add it to {where}")
    return converted, problems


def value_matches(annotation: Any, value: Any) -> bool:
    """Whether a YAML value fits a type hint; unknown hints accept anything."""
    if annotation is Any or annotation is inspect.Parameter.empty:
        return True
    if annotation is None or annotation is type(None):
        return value is None
    origin = typing.get_origin(annotation)
    arguments = typing.get_args(annotation)
    if origin in (Union, types.UnionType):
        return any(value_matches(option, value) for option in arguments)
    if origin is Literal:
        return value in arguments
    if annotation is bool:
        return isinstance(value, bool)
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if annotation is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if annotation is str:
        return isinstance(value, str)
    if origin is tuple:
        if not isinstance(value, list | tuple):
            return False
        if len(arguments) == 2 and arguments[1] is Ellipsis:
            return all(value_matches(arguments[0], item) for item in value)
        if arguments and len(arguments) != len(value):
            return False
        return all(value_matches(hint, item) for hint, item in zip(arguments, value, strict=False))
    if origin in (list, collections.abc.Sequence, collections.abc.Iterable):
        if not isinstance(value, list | tuple):
            return False
        return not arguments or all(value_matches(arguments[0], item) for item in value)
    if origin is dict or annotation is dict:
        return isinstance(value, dict)
    if inspect.isclass(annotation):
        # A YAML value can never be a Tensor, a Module or a function: those hints only match live objects.
        return isinstance(value, annotation)
    return True


def convert_value(annotation: Any, value: Any) -> Any:
    """YAML has lists, not tuples: give a tuple where the signature asks for one (Adam's `betas`)."""
    if isinstance(value, list) and _mentions_tuple(annotation):
        return tuple(value)
    return value


def _mentions_tuple(annotation: Any) -> bool:
    if typing.get_origin(annotation) is tuple:
        return True
    if typing.get_origin(annotation) in (Union, types.UnionType):
        return any(_mentions_tuple(option) for option in typing.get_args(annotation))
    return False


def describe_type(annotation: Any) -> str:
    """Type hints in words: `float | Tensor` -> 'a number', `tuple[float, float]` -> 'a list of 2 numbers'."""
    words = _describe(annotation)
    return " or ".join(dict.fromkeys(words))


def _describe(annotation: Any) -> list[str]:
    origin = typing.get_origin(annotation)
    arguments = typing.get_args(annotation)
    if origin in (Union, types.UnionType):
        return [word for option in arguments for word in _describe(option)]
    if origin is Literal:
        return ["one of " + ", ".join(repr(option) for option in arguments)]
    if origin is tuple:
        if arguments and arguments[-1] is not Ellipsis:
            return [f"a list of {len(arguments)} values"]
        return ["a list"]
    if origin in (list, collections.abc.Sequence, collections.abc.Iterable):
        return ["a list"]
    simple = {
        bool: "true or false",
        int: "an integer",
        float: "a number",
        str: "a string",
    }
    if annotation in simple:
        return [simple[annotation]]
    if annotation is None or annotation is type(None):
        return ["null"]
    if inspect.isclass(annotation) and annotation.__module__.startswith("torch"):
        return []  # a live torch object: not something a config can give
    return [getattr(annotation, "__name__", str(annotation))]
