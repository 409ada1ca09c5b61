"""Turning a validated RunSpec into live objects: seeded model, data on the device, optimizer, scheduler."""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass
from typing import Any

import numpy
import torch

from optcli.batches import InMemoryBatches
from optcli.spec import RunSpec


@dataclass
class Session:
    spec: RunSpec
    device: torch.device
    model: torch.nn.Module
    batches: InMemoryBatches
    loss_function: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: Any | None  # an LRScheduler or ReduceLROnPlateau


def derive_seed(seed: int, purpose: str) -> int:
    """Independent, stable seeds for each use of randomness (data, shuffling) from the run's one seed."""
    digest = hashlib.sha256(f"{seed}:{purpose}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def seed_everything(seed: int) -> None:
    random.seed(seed)
    numpy.random.seed(seed)
    torch.manual_seed(seed)  # also seeds every CUDA device


def build_session(spec: RunSpec) -> Session:
    seed_everything(spec.seed)
    # The model is built first, on the CPU, straight after seeding: its weights are those of
    # `torch.manual_seed(seed); Model()` in a hand-written script, on every device.
    model = spec.model.build()
    data = spec.data.source.load(derive_seed(spec.seed, "data"))
    device = torch.device(spec.device)
    model.to(device)
    loader = spec.data.loader
    batches = InMemoryBatches(
        data,
        loader.batch_size,
        shuffle=loader.shuffle,
        drop_last=loader.drop_last,
        generator=torch.Generator().manual_seed(derive_seed(spec.seed, "shuffle")),
        device=device,
    )
    loss_function = spec.loss.build().to(device)
    optimizer = spec.optimizer.build(model.parameters())
    scheduler = spec.scheduler.build(optimizer) if spec.scheduler is not None else None
    return Session(spec, device, model, batches, loss_function, optimizer, scheduler)
