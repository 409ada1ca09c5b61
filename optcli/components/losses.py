"""The loss registry: the torch.nn losses that compare a model's output with a target."""

from __future__ import annotations

import inspect
import re

import torch

from optcli.components.forward import ModelLoss
from optcli.components.registry import Registry

# Losses that judge one logit per sample against a 0/1 label.
BINARY_LOSSES = (torch.nn.BCEWithLogitsLoss,)

LOSSES = Registry(
    "loss",
    optional_suffix="loss",
    requirement=(
        lambda target: inspect.isclass(target) and issubclass(target, torch.nn.Module),
        "a torch.nn.Module class (built once, then called with the output and the target)",
    ),
)


def _snake_case(class_name: str) -> str:
    """`BCEWithLogitsLoss` -> `bce_with_logits`, `SmoothL1Loss` -> `smooth_l1`."""
    stem = class_name.removesuffix("Loss")
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "_", stem).lower()


def _takes_output_and_target(loss_class: type[torch.nn.Module]) -> bool:
    required = [
        parameter
        for name, parameter in inspect.signature(loss_class.forward).parameters.items()
        if name != "self" and parameter.default is inspect.Parameter.empty
    ]
    return len(required) == 2


for _name in sorted(dir(torch.nn)):
    _candidate = getattr(torch.nn, _name)
    is_loss = inspect.isclass(_candidate) and issubclass(_candidate, torch.nn.modules.loss._Loss)
    if not is_loss or not _name.endswith("Loss"):  # skips deprecated aliases such as NLLLoss2d
        continue
    # optcli computes loss(model(inputs), targets); losses needing a third input cannot be given one,
    # and a loss with weights of its own would train them outside the optimizer.
    unavailable = None
    if not _takes_output_and_target(_candidate):
        unavailable = "it needs inputs besides (output, target)"
    elif _name == "LinearCrossEntropyLoss":
        unavailable = "it holds trainable weights of its own, which the optimizer would not see"
    LOSSES.add(_snake_case(_name), _candidate, aliases=(_name,), unavailable=unavailable)

LOSSES.add(
    "from_model",
    ModelLoss,
    summary="the model computes its own loss: model(**batch) or model(inputs, targets) returns it",
)
