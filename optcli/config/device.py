"""Choosing the device a run trains on."""

from __future__ import annotations

import re

import torch

from optcli.errors import ConfigError


def resolve_device(requested: str) -> str:
    """`auto` -> cuda, then mps, then cpu; an explicit device must exist on this machine."""
    if requested == "auto":
        if torch.cuda.is_available():
            return "cuda"
        if torch.backends.mps.is_available():
            return "mps"
        return "cpu"
    if requested == "cpu":
        return "cpu"
    if requested == "mps":
        if not torch.backends.mps.is_available():
            raise ConfigError(
                "device: 'mps' was requested but this machine has no Apple GPU; use cpu or auto"
            )
        return "mps"
    match = re.fullmatch(r"cuda(?::(\d+))?", requested)
    if match is None:
        raise ConfigError(f"device: '{requested}' is not a device; use auto, cpu, cuda, cuda:N or mps")
    if not torch.cuda.is_available():
        raise ConfigError(
            f"device: '{requested}' was requested but CUDA is not available "
            f"(torch {torch.__version__}); use device: cpu or auto"
        )
    index = int(match.group(1) or 0)
    if index >= torch.cuda.device_count():
        raise ConfigError(
            f"device: '{requested}' does not exist; this machine has {torch.cuda.device_count()} GPU(s)"
        )
    return requested
