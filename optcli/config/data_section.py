"""The config's data section: the training dataset, its validation and test data, and the options
optcli applies to them (batching, the validation split, normalization)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from optcli.config.resolve_helpers import Problems, as_section, checked, lookup
from optcli.config.schema import LoaderConfig, validate_model
from optcli.config.spec import DataSource, DataSpec
from optcli.data.registry import DATASETS
from optcli.errors import ConfigError
from optcli.names import normalize_name

SPLIT_KEYS = ("val", "test")


def resolve_data(value: Any, base_dir: Path, problems: Problems) -> DataSpec | None:
    section = as_section(value, "data", problems)
    if section is None:
        return None
    splits = {key: section.pop(key) for key in SPLIT_KEYS if key in section}
    options_values = {key: section.pop(key) for key in list(section) if key in LoaderConfig.model_fields}
    options, option_problems = validate_model(LoaderConfig, options_values, "data")
    problems.lines += option_problems
    train = _resolve_source(section, "data", base_dir, problems)
    if train is None or options is None:
        return None
    others: dict[str, DataSource | None] = {}
    for key, split_value in splits.items():
        if split_value is None:
            continue
        if not isinstance(split_value, dict):
            problems.lines.append(
                f"data.{key}: expected a dataset mapping, e.g. {key}: {{path: {key}.csv}}, got {split_value!r}"
            )
            continue
        others[key] = _resolve_split(key, split_value, section, train, base_dir, problems)
    if options.val_fraction is not None and "val" in others:
        problems.lines.append("data.val_fraction: give either val_fraction or val:, not both")
    spec = DataSpec(train, options, others.get("val"), others.get("test"))
    if train.info.samples - spec.val_samples_held_out < 1:
        problems.lines.append(f"data.val_fraction: {options.val_fraction} leaves no training data")
    return spec


def _resolve_source(
    section: dict[str, Any], where: str, base_dir: Path, problems: Problems
) -> DataSource | None:
    arguments = dict(section)
    entry = lookup(DATASETS, arguments.pop("name"), where, base_dir, problems)
    if entry is None:
        return None
    for key in getattr(entry.target, "PATH_ARGUMENTS", ()):
        if isinstance(arguments.get(key), str):
            arguments[key] = str((base_dir / arguments[key]).resolve())
    checked_arguments = checked(entry, arguments, where, problems)
    if checked_arguments is None:
        return None
    try:
        source = entry.target(**checked_arguments)
        return DataSource(entry.name, source, source.describe())
    except ConfigError as error:
        problems.add(where, error)
        return None


def _resolve_split(
    key: str,
    value: dict[str, Any],
    train_section: dict[str, Any],
    train: DataSource,
    base_dir: Path,
    problems: Problems,
) -> DataSource | None:
    """`val: {path: val.csv}` keeps the training dataset's other arguments; a `name` of another
    dataset starts afresh."""
    where = f"data.{key}"
    same = "name" not in value or normalize_name(str(value["name"])) == normalize_name(train.name)
    section = {**train_section, **value} if same else dict(value)
    if not same and not isinstance(section.get("name"), str):
        problems.lines.append(f"{where}.name: required: the dataset's registry name")
        return None
    source = _resolve_source(section, where, base_dir, problems)
    if source is None:
        return None
    if source.info.feature_shape != train.info.feature_shape:
        problems.lines.append(
            f"{where}: its inputs have shape {list(source.info.feature_shape)}, the training data's "
            f"{list(train.info.feature_shape)}"
        )
    elif source.info.is_classification != train.info.is_classification:
        problems.lines.append(
            f"{where}: its targets are not of the training data's kind (class labels or values)"
        )
    elif train.info.class_names and source.info.class_names:
        unknown = sorted(set(source.info.class_names) - set(train.info.class_names))
        if unknown:
            problems.lines.append(f"{where}: labels {unknown} do not appear in the training data")
    elif source.info.classes and train.info.classes and source.info.classes > train.info.classes:
        problems.lines.append(
            f"{where}: it has labels up to {source.info.classes - 1}, the training data up to {train.info.classes - 1}"
        )
    return source
