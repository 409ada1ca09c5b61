"""The config's data section: the training dataset, its validation and test data, and the options
optcli applies to them (batching, the validation split, normalization)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import ValidationError

from optcli.config.schema import DataSection, NamedSection, describe_errors
from optcli.config.sections import Problems, bind_component, lookup
from optcli.config.spec import DataSource, DataSpec
from optcli.data.registry import DATASETS, is_in_memory, open_source
from optcli.data.text import STDLIB
from optcli.errors import ConfigError
from optcli.name_matching import normalize_name


def resolve_data(section: DataSection, base_dir: Path, problems: Problems) -> DataSpec | None:
    train = _resolve_source(section, "data", base_dir, problems)
    if train is None:
        return None
    splits = {}
    for key in ("val", "test"):
        value = getattr(section, key)
        if value is not None:
            splits[key] = _resolve_split(key, value, section, train, base_dir, problems)
    if section.val_fraction is not None and "val" in splits:
        problems.add("data.val_fraction: give either val_fraction or val:, not both")
    if section.test_fraction is not None and "test" in splits:
        problems.add("data.test_fraction: give either test_fraction or test:, not both")
    spec = DataSpec(train, section.loader, splits.get("val"), splits.get("test"))
    _check_loader_options(spec, problems)
    if train.info.classes == 1:
        names = f" ({', '.join(train.info.class_names)})" if train.info.class_names else ""
        problems.add(
            f"data.name: {train.component.name} has a single class{names}: a classifier of one class has a "
            "loss of 0 whatever its weights, so nothing would train; give it data of two or more classes "
            "(or data.task: regression, for values)"
        )
    if spec.train_samples < 1:
        taken = " and ".join(
            f"{key} {value}"
            for key, value in (
                ("val_fraction", section.val_fraction),
                ("test_fraction", section.test_fraction),
            )
            if value
        )
        problems.add(f"data: {taken} leave no training data")
    return spec


def _resolve_source(
    section: NamedSection, where: str, base_dir: Path, problems: Problems
) -> DataSource | None:
    """The dataset built from its arguments (file paths taken relative to the config file)."""
    entry = lookup(DATASETS, section.name, where, base_dir, problems)
    if entry is None:
        return None
    arguments = section.arguments
    for key in getattr(entry.target, "PATH_ARGUMENTS", ()):
        if isinstance(arguments.get(key), str) and not arguments[key].startswith(STDLIB):
            arguments[key] = str((base_dir / arguments[key]).resolve())
    component = bind_component(entry, arguments, where, base_dir, problems)
    if component is None:
        return None
    if where != "data" and not is_in_memory(component.target):
        problems.add(
            f"{where}: a Dataset callable gives its validation and test data itself (a mapping with 'val' "
            "and 'test'), or take them from the training data with data.val_fraction and data.test_fraction"
        )
        return None
    try:
        source = open_source(component)
        return DataSource(component, source, source.describe())
    except ConfigError as error:
        problems.add_error(where, error)
        return None


def _resolve_split(
    key: str,
    value: dict[str, Any],
    train_section: DataSection,
    train: DataSource,
    base_dir: Path,
    problems: Problems,
) -> DataSource | None:
    """`val: {path: val.csv}` keeps the training dataset's other arguments; a `name` of another
    dataset starts afresh."""
    where = f"data.{key}"
    same = "name" not in value or normalize_name(str(value["name"])) == normalize_name(train_section.name)
    if same:  # the training dataset's arguments, but for those this mapping gives itself
        args = value.get("args")
        own_args: dict[str, Any] = args if isinstance(args, dict) else {}
        given = {**value, **own_args}
        inherited = {key: item for key, item in train_section.arguments.items() if key not in given}
        mapping = {**value, "name": train_section.name, "args": {**inherited, **own_args}}
    else:
        mapping = value
    try:
        section = NamedSection.model_validate(mapping)
    except ValidationError as error:
        problems.lines += describe_errors(error, NamedSection, where)
        return None
    source = _resolve_source(section, where, base_dir, problems)
    if source is None:
        return None
    problem = _split_mismatch(source, train)
    if problem:
        problems.add(f"{where}: {problem}")
    return source


def _split_mismatch(source: DataSource, train: DataSource) -> str | None:
    """Why validation or test data cannot be judged by a model of the training data, or None."""
    own, trained = source.info, train.info
    if own.feature_shape != trained.feature_shape:
        return f"its inputs have shape {list(own.feature_shape)}, the training data's {list(trained.feature_shape)}"
    if own.is_classification != trained.is_classification:
        return "its targets are not of the training data's kind (class labels or values)"
    if trained.class_names and own.class_names:
        unknown = sorted(set(own.class_names) - set(trained.class_names))
        return f"labels {unknown} do not appear in the training data" if unknown else None
    if own.classes and trained.classes and own.classes > trained.classes:
        return f"it has labels up to {own.classes - 1}, the training data up to {trained.classes - 1}"
    return None


def _check_loader_options(spec: DataSpec, problems: Problems) -> None:
    """DataLoader options: what a DataLoader would reject, said before it is built."""
    loader = spec.loader
    if spec.info.tokenizer is not None and loader.normalize:
        problems.add("data.normalize: text's inputs are token ids, which are not features to standardize")
    if not spec.from_user_dataset:
        if loader.num_workers or loader.pin_memory or loader.persistent_workers or loader.prefetch_factor:
            problems.notes.append(
                "data: num_workers, pin_memory, persistent_workers and prefetch_factor apply to a Dataset of your "
                f"own; {spec.name} is held in memory and batched by indexing whole tensors, without a DataLoader"
            )
        return
    for key in ("persistent_workers", "prefetch_factor"):
        if getattr(loader, key) and loader.num_workers == 0:
            problems.add(f"data.{key}: it needs worker processes; set data.num_workers above 0")
    if loader.normalize:
        problems.add(
            "data.normalize: a Dataset of your own normalizes its samples itself (say, in __getitem__)"
        )
    source = spec.train.source
    for split, fraction in (("val", loader.val_fraction), ("test", loader.test_fraction)):
        if fraction is not None and source.has_split(split):
            problems.add(
                f"data.{split}_fraction: {spec.name} gives its own {split} data; leave {split}_fraction out"
            )


def resolve_data_alone(values: dict[str, Any], base_dir: Path) -> DataSpec:
    """A data section on its own (the samples `optcli predict` reads from a Dataset of the user's):
    validated and resolved, or one ConfigError listing every problem."""
    try:
        section = DataSection.model_validate(values)
    except ValidationError as error:
        raise ConfigError(describe_errors(error, DataSection, "data")) from None
    problems = Problems()
    spec = resolve_data(section, base_dir, problems)
    if problems.lines or spec is None:
        raise ConfigError(problems.lines or ["data: cannot be read"])
    return spec
