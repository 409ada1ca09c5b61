"""The resolved config that a run records as config.yaml: every argument, every default, every
filled-in value, in plain YAML that `optcli train` accepts again.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from optcli.components import optimizers, schedulers
from optcli.components.signature import REQUIRED, read_signature
from optcli.config.spec import Component, DataSource, DataSpec, SchedulerSpec

# Defaults not worth recording: resume bookkeeping and deprecated arguments.
_UNRECORDED = frozenset({"last_epoch", "verbose", "size_average", "reduce"})


def _with_defaults(component: Component, supplied_by_code: frozenset[str] = frozenset()) -> dict[str, Any]:
    """The component's arguments plus every plain default its signature has, as config.yaml shows them."""
    recorded: dict[str, Any] = {"name": component.name}
    try:
        parameters = read_signature(component.target).parameters
    except (TypeError, ValueError):
        parameters = {}
    for key, parameter in parameters.items():
        if key in supplied_by_code or key in _UNRECORDED or key == "schedulers":
            continue
        if key in component.arguments:
            recorded[key] = _plain(component.arguments[key])
        elif (
            parameter.default is not REQUIRED
            and _is_plain(parameter.default)
            and parameter.default is not None
        ):
            recorded[key] = _plain(parameter.default)
    recorded.update({key: _plain(value) for key, value in component.arguments.items() if key not in recorded})
    return recorded


def _is_plain(value: Any) -> bool:
    if isinstance(value, bool | int | float | str) or value is None:
        return True
    if isinstance(value, list | tuple):
        return all(_is_plain(item) for item in value)
    return False


def _plain(value: Any) -> Any:
    if isinstance(value, tuple | list):
        return [_plain(item) for item in value]
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    return value


def record_config(spec: dict[str, Any]) -> dict[str, Any]:
    data: DataSpec = spec["data"]
    data_record = _source_record(data.train)
    data_record.update(data.loader.model_dump())
    for key, split in (("val", data.val), ("test", data.test)):
        if split is not None:
            data_record[key] = _source_record(split)
    record: dict[str, Any] = {
        "name": spec["name"],
        "seed": spec["seed"],
        "device": spec["device"],
        "deterministic": spec["deterministic"],
        "model": _with_defaults(spec["model"]),
        "data": data_record,
        "loss": _with_defaults(spec["loss"]),
        "optimizer": _with_defaults(spec["optimizer"], optimizers.SUPPLIED_BY_CODE),
    }
    scheduler: SchedulerSpec | None = spec["scheduler"]
    if scheduler is not None:
        scheduler_record = _with_defaults(scheduler.component, schedulers.SUPPLIED_BY_CODE)
        if scheduler.children:
            scheduler_record["schedulers"] = [
                _with_defaults(child, schedulers.SUPPLIED_BY_CODE) for child in scheduler.children
            ]
        scheduler_record["interval"] = scheduler.interval
        if scheduler.monitor is not None:
            scheduler_record["monitor"] = scheduler.monitor
        record["scheduler"] = scheduler_record
    if spec["clip"] is not None:
        record["clip"] = spec["clip"].model_dump(exclude_none=True)
    record["train"] = spec["train"].model_dump()
    record["output"] = spec["output"].model_dump()
    return record


def _source_record(data: DataSource) -> dict[str, Any]:
    return _with_defaults(Component(data.name, type(data.source), _source_arguments(data.source)))


def _source_arguments(source: Any) -> dict[str, Any]:
    """A dataset object's constructor arguments, read back from its attributes."""
    parameters = read_signature(type(source)).parameters
    return {
        key: _plain(str(value) if isinstance(value, Path) else value)
        for key in parameters
        if (value := getattr(source, key, None)) is not None
    }
