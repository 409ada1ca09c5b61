"""Sizes the machine cannot hold, refused before anything is built or written: the model's weights
and gradients (counted on the meta device) and the samples optcli generates in memory."""

from __future__ import annotations

import math
import os

import torch

from optcli.config.sections import Problems
from optcli.config.spec import DataSpec


def physical_memory() -> int | None:
    """This machine's memory in bytes (None where the platform does not say)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def check_memory(network: torch.nn.Module | None, data: DataSpec | None, problems: Problems) -> None:
    """Only what cannot fit whatever else happens: the weights and their gradients (no optimizer state,
    no activations), and the in-memory samples' float32 values."""
    available = physical_memory()
    if available is None:
        return
    if network is not None:
        parameters = list(network.parameters())
        weights = sum(parameter.numel() * parameter.element_size() for parameter in parameters)
        if 2 * weights > available:
            count = sum(parameter.numel() for parameter in parameters)
            problems.add(
                f"model: its {count:,} parameters need {_gib(2 * weights)} for their weights and gradients "
                f"alone, more than this machine's {_gib(available)} of memory; make the model smaller"
            )
    if data is not None and not data.from_user_dataset:
        values = data.info.samples * (math.prod(data.info.feature_shape) + data.info.target_size)
        if 4 * values > available:
            problems.add(
                f"data: {data.info.samples:,} samples of {math.prod(data.info.feature_shape):,} values need "
                f"{_gib(4 * values)} in memory, more than this machine's {_gib(available)}; use fewer "
                "(data.samples, data.features), or a Dataset of your own, which is read as it goes"
            )


def _gib(size: int | float) -> str:
    return f"{size / 2**30:,.1f} GiB"
