"""Losses and gradient norms copied from the device to the host in batches, so that the loop never
waits for an accelerator on an ordinary step."""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import NamedTuple

import torch

from optcli.errors import TrainingFailed
from optcli.train.records import StepRecord

# Steps between host copies on an accelerator; on the CPU a copy costs nothing, so every step is copied.
DEVICE_STEPS_PER_SYNC = 50


class NonFiniteLoss(TrainingFailed):
    def __init__(self, step: int, epoch: int, loss: float, advice: str) -> None:
        super().__init__(
            f"the loss became {loss} at step {step} (epoch {epoch}); training stopped. {advice}",
            diverged=True,
        )


def divergence_advice(clipped: bool) -> str:
    """What usually helps a run whose loss or gradients became non-finite: clipping only where the
    config does not clip already."""
    if clipped:
        return "A lower optimizer.lr usually helps (the gradients are clipped already)"
    return "A lower optimizer.lr or gradient clipping (clip: {max_norm: 1.0}) usually helps"


class PendingStep(NamedTuple):
    step: int
    epoch: int
    loss: torch.Tensor  # still on the device
    lr: float
    grad_norm: torch.Tensor | None
    elapsed_s: float
    logged: bool
    skipped: bool = False  # with on_nonfinite: skip, a step whose update was left out
    group_lrs: tuple[float, ...] = ()  # the other parameter groups' rates, as StepRecord's


class HostCopies:
    """Steps waiting for their values to reach the host, in step order."""

    def __init__(
        self, steps_per_sync: int, epoch_losses: list[float], advice: str = divergence_advice(False)
    ) -> None:
        self.steps_per_sync = steps_per_sync
        self.epoch_losses = epoch_losses  # the epoch's losses of applied steps, for its mean
        self.advice = advice  # what a divergence's message suggests (divergence_advice)
        self.pending: list[PendingStep] = []

    def add(self, step: PendingStep) -> bool:
        """Keep a step's values; whether it is time to copy them (then call `flush`)."""
        self.pending.append(step)
        return len(self.pending) >= self.steps_per_sync

    def flush(self) -> Iterator[StepRecord]:
        """Copy every pending value in one go; yield the logged rows, in step order; stop the run at a
        non-finite loss of a step that was applied."""
        if not self.pending:
            return
        items, self.pending = self.pending, []
        # Note: a host-device sync point, once per `steps_per_sync` steps.
        losses = _to_floats([item.loss for item in items])
        norms = iter(
            _to_floats([item.grad_norm for item in items if item.logged and item.grad_norm is not None])
        )
        for item, loss in zip(items, losses, strict=True):
            grad_norm = next(norms) if item.logged and item.grad_norm is not None else None
            finite = math.isfinite(loss)
            if not item.skipped:
                self.epoch_losses.append(loss)
            if item.logged or not finite:
                yield StepRecord(
                    item.step, item.epoch, loss, item.lr, grad_norm, item.elapsed_s, item.group_lrs
                )
            if not finite and not item.skipped:
                raise NonFiniteLoss(item.step, item.epoch, loss, self.advice)


def _to_floats(tensors: list[torch.Tensor]) -> list[float]:
    """Scalars to Python floats in one copy; a single one (every step on the CPU) skips the stack."""
    if len(tensors) <= 1:
        return [tensor.item() for tensor in tensors]
    return torch.stack(tensors).tolist()
