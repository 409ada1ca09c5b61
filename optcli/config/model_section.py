"""The config's model section: the model (a built-in, a class or function of one's own, or a Hugging
Face transformers class), the sizes the data decides, what of its output the loss sees, and the
trained weights it may start from."""

from __future__ import annotations

from pathlib import Path

from optcli.components import models
from optcli.components.hugging_face import HuggingFaceModel, is_hugging_face_model
from optcli.components.signature import read_signature
from optcli.config.hugging_face import resolve_hugging_face
from optcli.config.init_and_groups import ModelInit
from optcli.config.schema import ModelSection, NamedSection
from optcli.config.sections import Problems, bind_component, lookup
from optcli.config.spec import Component, DataSpec


def model_output_key(section: ModelSection, model: Component | None) -> str | int | None:
    """What of the model's output the loss sees: model.output, else a Hugging Face model's `logits`
    (its outputs are ModelOutput mappings, their `loss` read by loss: from_model)."""
    if section.output is not None:
        return section.output
    return "logits" if model is not None and isinstance(model.target, HuggingFaceModel) else None


def resolve_model(
    section: NamedSection, data: DataSpec | None, base_dir: Path, problems: Problems
) -> Component | None:
    """The model, with the sizes the data decides (in_features, out_features, input_shape) filled in.
    Broken data (reported already) leaves the sizes unknown: the model's own arguments are still
    checked, so that one message lists every problem, and no model is returned."""
    arguments = section.arguments
    entry = lookup(models.MODELS, section.name, "model", base_dir, problems)
    if entry is None:
        return None
    if is_hugging_face_model(entry.target):
        hugging_face = resolve_hugging_face(entry.name, entry.target, arguments, data, base_dir, problems)
        return hugging_face if data is not None else None
    try:
        parameters = read_signature(entry.target).parameters
    except (TypeError, ValueError):
        parameters = {}
    if data is None:
        stand_in = {"in_features": 1, "out_features": 1, "input_shape": [1], "vocab_size": 2, "block_size": 1}
        sized = {key: value for key, value in stand_in.items() if key in parameters and key not in arguments}
        bind_component(entry, {**arguments, **sized}, "model", base_dir, problems)
        return None
    sizes = {
        "in_features": data.info.features,
        "out_features": 1 if data.binary_labels else data.info.out_features,
        "input_shape": list(data.info.feature_shape),
        "vocab_size": (data.info.classes or None)
        if data.info.sequence_length
        else None,  # a language model's
        "block_size": data.info.sequence_length,
    }
    for key in models.SIZE_ARGUMENTS:
        if key in parameters and key not in arguments and sizes[key] is not None:
            arguments[key] = sizes[key]
    if arguments.get("out_features") == 0:  # class labels, but the Dataset does not say how many
        problems.add(
            f"model.out_features: {data.name} does not say how many classes it has (no `classes` or `targets` "
            "attribute); set model.out_features"
        )
        return None
    return bind_component(entry, arguments, "model", base_dir, problems)


def resolve_model_init(section: ModelSection, base_dir: Path, problems: Problems) -> ModelInit | None:
    """model.init: a run directory (its best or last checkpoint), a folder of one name's runs (the
    newest), or a weights file."""
    if section.init is None:
        return None
    source = (base_dir / section.init).resolve()
    if source.is_dir() and not (source / "checkpoints").is_dir():
        # A run name's folder (runs/fruit_csv): its newest run (run folders are named by their start time).
        runs = sorted(run.parent.parent for run in source.glob(f"*/checkpoints/{section.init_checkpoint}.pt"))
        source = runs[-1] if runs else source
    path = source / "checkpoints" / f"{section.init_checkpoint}.pt" if source.is_dir() else source
    if not path.is_file():
        what = (
            f"has no checkpoints/{section.init_checkpoint}.pt"
            if source.is_dir()
            else "is no run directory or weights file"
        )
        problems.add(f"model.init: {source} {what}")
        return None
    return ModelInit(str(path), section.init_strict, str(source), section.init_checkpoint)
