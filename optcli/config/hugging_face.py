"""The model section of a Hugging Face model (`name: "transformers:BertForSequenceClassification"`):
its `config:` mapping checked against the model's config class, and the sizes the data decides filled
in, so that a mistake is a config error naming `model.config.<key>` instead of a crash at step 1.

- Unknown keys are refused (a config class would keep a misspelling as an attribute, unread).
- Text data: `vocab_size` is the data's (256 byte tokens) unless given, and the positions the model
  can take (`n_positions`, `max_position_embeddings`) must cover `data.block_size`.
- Class labels: `num_labels` is the data's class count unless given; given, it must equal it.
"""

from __future__ import annotations

import inspect
from typing import Any

from optcli.components.hugging_face import HuggingFaceModel
from optcli.config.sections import Problems, portable_name
from optcli.config.spec import Component, DataSpec
from optcli.name_matching import unknown_name_message

POSITION_KEYS = ("n_positions", "max_position_embeddings", "n_ctx")


def resolve_hugging_face(
    name: str,
    model_class: Any,
    arguments: dict[str, Any],
    data: DataSpec | None,
    base_dir: Any,
    problems: Problems,
) -> Component | None:
    builder = HuggingFaceModel(model_class)
    extra = sorted(set(arguments) - {"config"})
    if extra:
        problems.add(
            f"model.{extra[0]}: {builder.__name__} takes its settings in model.config (model: {{name: ..., config: "
            f"{{{extra[0]}: ...}}}})"
        )
        return None
    config = arguments.get("config") or {}
    if not isinstance(config, dict):
        problems.add(f"model.config: a mapping of {builder.config_class.__name__}'s settings")
        return None
    defaults = builder.make_config({}).to_dict()  # the config class's own settings, each at its default
    known = _known_settings(builder, defaults)
    unknown = sorted(set(config) - known)
    if unknown:
        problems.add(
            f"model.config.{unknown[0]}: "
            + unknown_name_message(f"setting of {builder.config_class.__name__}", unknown[0], sorted(known))
        )
        return None
    config = {**config, **_sizes_from_data(builder, config, known, defaults, data, problems)}
    if problems.lines:
        return None
    try:
        builder.make_config(config)
    except Exception as error:
        problems.add(
            f"model.config: {builder.config_class.__name__} refused it: {type(error).__name__}: {error}"
        )
        return None
    return Component(portable_name(name, base_dir), builder, {"config": config})


def _known_settings(builder: HuggingFaceModel, defaults: dict[str, Any]) -> set[str]:
    """The settings the config class has: its defaults' keys and its constructor's parameters."""
    config_class = builder.config_class
    parameters = inspect.signature(config_class.__init__).parameters
    named = {key for key, p in parameters.items() if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)}
    # (num_labels is every config's, taken by PretrainedConfig's **kwargs.)
    return (named | set(defaults) | {"num_labels"}) - {"self"}


def _sizes_from_data(
    builder: HuggingFaceModel,
    config: dict[str, Any],
    known: set[str],
    defaults: dict[str, Any],
    data: DataSpec | None,
    problems: Problems,
) -> dict[str, Any]:
    if data is None:
        return {}
    info, filled = data.info, {}
    if info.sequence_length is not None:
        if "vocab_size" in known and "vocab_size" not in config and info.classes:
            filled["vocab_size"] = info.classes
        for key in POSITION_KEYS:
            if key in known:
                positions = config.get(key, defaults.get(key))
                if isinstance(positions, int) and positions < info.sequence_length:
                    problems.add(
                        f"model.config.{key}: {positions} positions, but data.block_size is {info.sequence_length}; "
                        f"give {key}: {info.sequence_length} or more"
                    )
                break
    elif info.is_classification and not builder.causal and info.classes:
        given = config.get("num_labels")
        if given is None:
            filled["num_labels"] = info.classes
        elif given != info.classes:
            problems.add(
                f"model.config.num_labels: {given}, but the data has {info.classes} classes; give num_labels: "
                f"{info.classes}, or leave it out and optcli sets it from the data"
            )
    return filled
