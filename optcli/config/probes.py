"""Dry runs on the meta device: the model, loss and optimizer tried on shapes alone.

Meta tensors have shapes and dtypes but no data, so these cost no memory and almost no time, yet
they catch what signatures cannot: a loss that cannot compare the model's output with the targets,
or an optimizer that cannot take the model's parameters. Found here, such a mistake is a config
error naming the section, instead of a crash at the first step.
"""

from __future__ import annotations

import warnings
from typing import Any

import torch

from optcli.data.in_memory import DataInfo


def build_on_meta(component: Any) -> torch.nn.Module:
    with torch.device("meta"):
        module: torch.nn.Module = component.build()
    return module


def build_on_stand_in(optimizer: Any) -> torch.optim.Optimizer:
    """The optimizer built on one small stand-in parameter: runs torch's own checks of its arguments,
    and gives schedulers something to schedule."""
    built: torch.optim.Optimizer = optimizer.build([torch.nn.Parameter(torch.zeros(2, 2))])
    return built


def check_optimizer_takes_model(model: Any, optimizer: Any) -> str | None:
    """Build the optimizer on the model's parameters (Muon takes 2-D weights only); a problem or None."""
    parameters = list(build_on_meta(model).parameters())
    try:
        optimizer.build(parameters)
    except Exception as error:
        return f"optimizer: {optimizer.name} cannot train this model: {error}"
    return None


def check_forward(model: Any, loss: Any, info: DataInfo, batch_size: int) -> str | None:
    """Run one batch's shapes through the model and the loss; a problem or None."""
    batch = max(1, min(batch_size, info.samples))
    with torch.device("meta"):
        inputs = torch.zeros(batch, *info.feature_shape)
        if info.is_classification:
            targets = torch.zeros(batch, dtype=torch.long)
        else:
            targets = torch.zeros(batch, info.target_size)
        try:
            network = model.build()
            output = network(inputs)
        except NotImplementedError:
            return None  # a model that needs real data to run (e.g. .item()): checked at the first step
        except Exception as error:
            return (
                f"model: {model.name} cannot take the data's inputs of shape {list(inputs.shape)}: "
                f"{type(error).__name__}: {error}"
            )
        try:
            with warnings.catch_warnings():
                # torch only warns when mse or l1 would broadcast mismatched shapes: nearly always a
                # mistake, so that warning is an error here. Its other advice shows when training.
                warnings.simplefilter("ignore")
                warnings.filterwarnings("error", message=".*target size", category=UserWarning)
                loss.build()(output, targets)
        except NotImplementedError:
            return None
        except Exception as error:
            kind = "class labels" if info.is_classification else "real-valued targets"
            return (
                f"loss: {loss.name} cannot compare the model's output {_shape(output)} with the data's "
                f"{kind} {_shape(targets)}: {error}"
            )
    return None


def _shape(tensor: Any) -> str:
    if not isinstance(tensor, torch.Tensor):
        return f"({type(tensor).__name__})"
    return f"(shape {list(tensor.shape)}, {str(tensor.dtype).removeprefix('torch.')})"
