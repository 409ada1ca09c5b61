"""The dry run's forward check: one batch through the model and the loss on the meta device, called
as training will call them (components/forward.py), so that a model that cannot take the data, an output
the loss cannot read, or a loss that cannot compare it with the targets is a config error."""

from __future__ import annotations

import warnings
from typing import Any

import torch

from optcli.components.forward import TARGET_KEY, Forward, classes_last, pick_output
from optcli.config.sections import Problems, is_subclass
from optcli.config.spec import Component, DataSpec, forward_of
from optcli.data.loader import move_batch
from optcli.errors import ConfigError

# Losses that take a softmax over the model's outputs: over one output they are always zero.
SOFTMAX_LOSSES = (torch.nn.CrossEntropyLoss, torch.nn.NLLLoss)


def first_batch(data: DataSpec | None, problems: Problems) -> Any:
    """A user Dataset's real first batch (None for in-memory data, whose shapes are known)."""
    if data is None or not data.from_user_dataset:
        return None
    try:
        return data.train.source.first_batch(data.loader.batch_size)
    except ConfigError as error:
        problems.add_error("data", error)
        return None


def check_forward(
    network: torch.nn.Module,
    model: Component | None,
    output_key: str | int | None,
    loss: Component,
    data: DataSpec,
    example: Any,
    problems: Problems,
) -> int | None:
    """Run one batch's shapes through the model and the loss, as training will call them; return how
    many outputs per sample the loss sees (None when that is not one number)."""
    forward = forward_of(model, output_key, loss, data)
    if data.from_user_dataset and example is None:
        return None  # its first batch could not be read: reported
    if forward.shift_labels and not isinstance(example, dict):
        problems.add(
            f"loss: from_model: {model.name if model else 'the model'} shifts the labels it is given by one "
            "token itself, but these targets are already the next tokens (text data's are); leave loss out "
            "(cross-entropy over its logits), or give it a Dataset of dict batches with labels = input_ids"
        )
        return None
    if example is not None and not _labels_in_range(example, data, problems):
        return None
    batch = (
        move_batch(example, torch.device("meta"), data.binary_labels, data.info.target_column)
        if example is not None
        else _zeros_batch(data)
    )
    mismatch = _dtype_mismatch(network, batch) if example is not None else None
    if mismatch:
        problems.add(mismatch)
        return None
    try:
        output, targets = forward.run_model(network, batch)
    except Exception as error:
        if not needs_real_data(error):
            _cannot_take(model, forward, batch, error, problems)
            return None
        # A model that needs real values to run (.item(), a branch on its data, a Hugging Face
        # model's mask checks): one real small batch on the CPU instead.
        real = _real_run(model, forward, data, example, problems)
        if real is None:
            return None
        output, targets = real
    picked = (
        _picked(output, output_key, problems) if not forward.from_model or output_key is not None else output
    )
    if picked is None:
        return None
    width = picked.shape[1] if isinstance(picked, torch.Tensor) and picked.dim() == 2 else None
    if forward.sequence and classes_last(picked, targets):
        width = picked.shape[-1]
    classes = data.info.classes if not data.binary_labels else None
    if classes and width is not None and width < classes:
        # Cross-entropy would index past the output at the first batch with a label it lacks.
        problems.add(
            f"model: it gives {width} outputs per sample, but the data has {classes} classes; "
            f"set model.out_features: {classes}, or leave it out and optcli sets it from the data"
        )
        return None
    if width == 1 and not forward.from_model and is_subclass(loss.target, SOFTMAX_LOSSES):
        # A softmax over one output is 1 whatever the weights: the loss is 0 and every gradient too.
        fix = "for values use loss: mse" if not data.info.is_classification else "set model.out_features"
        problems.add(
            f"loss: {loss.name} over a single output per sample is always 0 (a softmax over one value is 1), "
            f"so nothing would train; {fix}, or for two classes loss: bce_with_logits"
        )
        return None
    _check_loss(forward, loss, output, picked, targets, data, problems)
    return width


def _cannot_take(
    model: Component | None, forward: Forward, batch: Any, error: Exception, problems: Problems
) -> None:
    name = model.name if model is not None else "the model"
    called = ""
    if forward.from_model:
        called = " (loss: from_model calls model(inputs, targets), or model(**batch) for a dict batch)"
    problems.add(
        f"model: {name} cannot take the data's {_describe(batch)}{called}: {type(error).__name__}: {error}"
    )


# The samples of the real batch a model that cannot run on the meta device is checked with.
REAL_BATCH = 2


def _real_run(
    model: Component | None, forward: Forward, data: DataSpec, example: Any, problems: Problems
) -> tuple[Any, torch.Tensor | None] | None:
    """The model built for real on the CPU and called on a real batch of REAL_BATCH samples (the
    data's first, or zeros of its shapes): its output and the targets, or None with the reason
    noted. Torch's random state is left as it was (the run's weights are drawn from it later)."""
    name = model.name if model is not None else "the model"
    cpu = torch.device("cpu")
    with torch.device(cpu), torch.random.fork_rng(devices=[]):
        try:
            network = model.build() if model is not None else None
        except Exception as error:
            network, reason = None, f"building it on the CPU failed: {type(error).__name__}: {error}"
        if network is None:
            problems.notes.append(
                f"model: {name} cannot run on the meta device and was not built to run a real batch "
                f"({reason if model is not None else 'no model'}); its first check is the first training step"
            )
            return None
        if example is not None:
            whole = move_batch(example, cpu, data.binary_labels, data.info.target_column)
            batch = (
                {k: v[:REAL_BATCH] for k, v in whole.items()}
                if isinstance(whole, dict)
                else tuple(part[:REAL_BATCH] for part in whole)
            )
        else:
            batch = _zeros_batch(data, REAL_BATCH)
        try:
            with torch.no_grad():
                return forward.run_model(network, batch)
        except Exception as error:
            _cannot_take(model, forward, batch, error, problems)
            return None


def _labels_in_range(example: Any, data: DataSpec, problems: Problems) -> bool:
    """A user Dataset's first batch: its class labels must lie in [0, classes), or the first step fails
    (an index past the model's outputs); the message names the smallest and largest label."""
    classes = data.info.classes
    targets = example.get(TARGET_KEY) if isinstance(example, dict) else example[1]
    if not classes or data.binary_labels or not isinstance(targets, torch.Tensor):
        return True
    if targets.is_floating_point() or targets.numel() == 0:
        return True
    low, high = int(targets.min()), int(targets.max())
    if low >= 0 and high < classes:
        return True
    problems.add(
        f"data.name: {data.train.component.name} has labels from {low} to {high} in its first batch, but "
        f"{classes} classes (labels 0 to {classes - 1}); number the labels from 0 (label - {low} if they "
        f"start at {low}), or give the Dataset a classes list of {high + 1} names"
    )
    return False


def _check_loss(
    forward: Forward,
    loss: Component,
    output: Any,
    picked: Any,
    targets: torch.Tensor | None,
    data: DataSpec,
    problems: Problems,
) -> None:
    try:
        with warnings.catch_warnings():
            # torch only warns when mse or l1 would broadcast mismatched shapes: nearly always a
            # mistake, so that warning is an error here. Its other advice shows when training.
            warnings.simplefilter("ignore")
            warnings.filterwarnings("error", message=".*target size", category=UserWarning)
            value = forward.judge(loss.build(), output, targets)[0]
    except Exception as error:
        if needs_real_data(error):
            return
        if forward.from_model:
            problems.add(f"loss: from_model: {error}")
            return
        kind = "class labels" if data.info.is_classification else "real-valued targets"
        problems.add(
            f"loss: {loss.name} cannot compare the model's output {shape_of(picked)} with the data's "
            f"{kind} {shape_of(targets)}: {error}"
        )
        return
    if forward.from_model and isinstance(value, torch.Tensor) and value.numel() != 1:
        problems.add(
            f"loss: from_model: the model returned a loss of shape {list(value.shape)}, not one number; "
            "return its mean (loss.mean()), as backward needs a scalar"
        )


def _dtype_mismatch(network: torch.nn.Module, batch: Any) -> str | None:
    """Floating-point inputs of another dtype than the model's weights: the meta device lets them
    through, a real first step would not."""
    weights = next((p.dtype for p in network.parameters() if p.is_floating_point()), None)
    inputs = list(batch.values()) if isinstance(batch, dict) else [batch[0]]
    for value in inputs:
        if (
            isinstance(value, torch.Tensor)
            and value.is_floating_point()
            and weights
            and value.dtype != weights
        ):
            name = lambda dtype: str(dtype).removeprefix("torch.")  # noqa: E731
            return (
                f"data: the inputs are {name(value.dtype)} but the model's weights are {name(weights)}; have the "
                f"Dataset return {name(weights)} tensors (NumPy's arrays are float64: .astype(numpy.float32))"
            )
    return None


def needs_real_data(error: Exception) -> bool:
    """Meta tensors have no values: an operation that reads one (`.item()`, `if x.sum() > 0`) fails on
    them, through no fault of the config."""
    return isinstance(error, NotImplementedError) or "meta tensor" in str(error)


def _zeros_batch(data: DataSpec, samples: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """A batch of in-memory data's shapes (its values do not matter on the meta device)."""
    info = data.info
    batch = max(1, min(samples or data.loader.batch_size, info.samples))
    inputs = torch.zeros(batch, *info.feature_shape, dtype=torch.long if info.tokenizer else None)
    if data.binary_labels:
        return inputs, torch.zeros(batch, 1)
    dtype = torch.long if info.is_classification else torch.get_default_dtype()
    return inputs, torch.zeros(batch, *info.sample_target_shape, dtype=dtype)


def _describe(batch: Any) -> str:
    if isinstance(batch, dict):
        return "batch {" + ", ".join(f"{key}: {shape_of(value)}" for key, value in batch.items()) + "}"
    return f"inputs {shape_of(batch[0])}"


def _picked(output: Any, key: str | int | None, problems: Problems) -> Any:
    """The part of the model's output the loss sees; None (and a problem) when there is no telling."""
    if key is None and isinstance(output, dict | tuple | list):
        found = list(output) if isinstance(output, dict) else list(range(len(output)))
        kind = "a dict with keys" if isinstance(output, dict) else f"a {type(output).__name__} of items"
        problems.add(
            f"model: it returns {kind} {found}, not one tensor; set model.output to the one the loss should see "
            f"(e.g. model.output: {found[0] if found else 0})"
        )
        return None
    try:
        return pick_output(output, key)
    except (KeyError, IndexError, AttributeError, TypeError):
        returned = list(output) if isinstance(output, dict) else type(output).__name__
        problems.add(f"model.output: {key!r} is not in what the model returns ({returned})")
        return None


def shape_of(tensor: Any) -> str:
    if not isinstance(tensor, torch.Tensor):
        return f"({type(tensor).__name__})"
    return f"(shape {list(tensor.shape)}, {str(tensor.dtype).removeprefix('torch.')})"
