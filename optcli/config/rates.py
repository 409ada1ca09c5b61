"""The learning rates a scheduler gives at any period of the run, without stepping through the periods
before it: so that checking a run of a million steps costs what checking one of a thousand does.

torch gives most of its schedulers a closed form (`_get_closed_form_lr`, from `last_epoch`); OneCycleLR
and CyclicLR compute their rate from `last_epoch` alone; CosineAnnealingWarmRestarts takes the epoch
to jump to; SequentialLR is its children, each from its own milestone. Others (ChainedScheduler, a
scheduler of your own) are walked step by step. The values agree with a walk up to float rounding:
they feed warnings, never training.
"""

from __future__ import annotations

import bisect
from typing import Any

from torch.optim import lr_scheduler

SAMPLED_PERIODS = 10_000  # a longer schedule is previewed at this many evenly spaced periods


def can_jump(scheduler: Any) -> bool:
    if isinstance(scheduler, lr_scheduler.SequentialLR):
        return all(can_jump(child) for child in scheduler._schedulers)
    return hasattr(scheduler, "_get_closed_form_lr") or isinstance(
        scheduler,
        lr_scheduler.OneCycleLR | lr_scheduler.CyclicLR | lr_scheduler.CosineAnnealingWarmRestarts,
    )


def rates_at(scheduler: Any, period: int) -> tuple[float, ...]:
    """Every parameter group's rate after `period` scheduler steps (0: the rate the run starts with).
    The scheduler is left wherever the jump put it: use a throwaway one."""
    if isinstance(scheduler, lr_scheduler.SequentialLR):
        milestones = scheduler._milestones
        index = bisect.bisect_right(milestones, period)
        start = milestones[index - 1] if index else 0
        return rates_at(scheduler._schedulers[index], period - start)
    if isinstance(scheduler, lr_scheduler.CosineAnnealingWarmRestarts):
        scheduler.step(period)
        return tuple(float(group["lr"]) for group in scheduler.optimizer.param_groups)
    scheduler.last_epoch = period
    if hasattr(scheduler, "_get_closed_form_lr"):
        return tuple(float(rate) for rate in scheduler._get_closed_form_lr())
    return tuple(float(rate) for rate in scheduler.get_lr())


def sampled_periods(length: int) -> list[int]:
    """SAMPLED_PERIODS periods from the first (0) to the last (length - 1), evenly spaced."""
    count = min(length, SAMPLED_PERIODS)
    return sorted({round(index * (length - 1) / (count - 1)) for index in range(count)}) if count > 1 else [0]
