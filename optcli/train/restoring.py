"""A checkpoint put back into a session: weights, optimizer and scheduler states, every random
generator, and the arguments a resume may change (a new rate, a longer run)."""

from __future__ import annotations

import random
from typing import Any

import numpy
import torch

from optcli.components.parted import PartSchedulers
from optcli.config.parts import run_optimizer
from optcli.config.spec import SchedulerSpec
from optcli.errors import ConfigError
from optcli.train.checkpoints import Checkpoint
from optcli.train.session import Session
from optcli.train.state import LoopState


def restore_random_state(session: Session, state: dict[str, Any], order_state: torch.Tensor) -> None:
    version, internal, gauss_next = state["python"]
    random.setstate((version, tuple(internal.tolist()), gauss_next))
    name, keys, position, has_gauss, cached = state["numpy"]
    numpy.random.set_state((name, keys.numpy(), position, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    session.batches.generator.set_state(order_state)


def restore_session(session: Session, checkpoint: Checkpoint) -> LoopState:
    """Put a checkpoint's states into a freshly built session; return where the loop stood."""
    # A plain dict: no stale _metadata. The training-mode weights where they differ from those scored.
    weights = checkpoint.get("training_model", checkpoint["model"])
    try:
        session.model.load_state_dict(dict(weights))
    except RuntimeError as error:
        detail = str(error).splitlines()[0]
        raise ConfigError(f"the checkpoint holds another model than the config describes: {detail}") from None
    try:
        session.optimizer.load_state_dict(checkpoint["optimizer"])
        if session.scheduler is not None and checkpoint["scheduler"] is not None:
            session.scheduler.load_state_dict(checkpoint["scheduler"])
        if session.scaler is not None and "scaler" in checkpoint:
            session.scaler.load_state_dict(checkpoint["scaler"])
    except (ValueError, KeyError, RuntimeError) as error:
        raise ConfigError(
            f"the checkpoint's optimizer or scheduler state does not fit the config's: {error}"
        ) from None
    restore_random_state(session, checkpoint["random"], checkpoint["data_order"])
    return LoopState.from_dict(checkpoint["loop"])


def apply_optimizer_arguments(session: Session) -> None:
    """After a resume with changed optimizer arguments (--allow-changes), every parameter group holds
    what a fresh run of the changed config gives it (its own group's values, not the section's copied
    onto every group). A learning rate a schedule has moved since the start moves by the same factor
    as its group's starting rate, and so does the schedule's base rate for that group."""
    spec = session.spec
    fresh = run_optimizer(spec, session.model).param_groups
    configured: set[str] = set()
    for optimizer, groups in [(spec.optimizer, spec.param_groups)] + [
        (part.optimizer, part.param_groups) for part in spec.parts
    ]:
        configured |= set(optimizer.arguments) | {key for group in groups for key in group.arguments}
        if optimizer.inner is not None:
            configured |= set(optimizer.inner.arguments)
    base_rates = _schedule_base_rates(session)
    for group, wanted, base in zip(session.optimizer.param_groups, fresh, base_rates, strict=True):
        for key in configured - {"params", "lr"}:
            if key in group and key in wanted:
                group[key] = wanted[key]
        if base is None or not base[0][base[1]]:
            group["lr"] = wanted["lr"]
            continue
        base_lrs, index = base
        ratio = wanted["lr"] / base_lrs[index]
        group["lr"] *= ratio
        base_lrs[index] = wanted["lr"]
        if "initial_lr" in group:
            group["initial_lr"] = wanted["lr"]


def _schedule_base_rates(session: Session) -> list[tuple[list[float], int] | None]:
    """For each of the optimizer's groups, where its schedule's base rate is kept (a scheduler's
    `base_lrs` and the index in it), or None without a schedule."""
    groups = len(session.optimizer.param_groups)
    scheduler = session.scheduler
    if isinstance(scheduler, PartSchedulers):
        places: list[tuple[list[float], int] | None] = []
        for name, span in session.optimizer.group_spans().items():  # type: ignore[attr-defined]
            base_lrs = getattr(scheduler.schedulers.get(name), "base_lrs", None)
            places += [(base_lrs, index) if base_lrs is not None else None for index in range(len(span))]
        return places
    base_lrs = getattr(scheduler, "base_lrs", None)
    return [(base_lrs, index) if base_lrs is not None else None for index in range(groups)]


def apply_scheduler_arguments(session: Session) -> None:
    """After a resume with changed scheduler arguments (a new run length among them), the config's
    values win over those the checkpoint's state restored (T_max, gamma, ...)."""
    if isinstance(session.scheduler, PartSchedulers):
        live = session.scheduler.schedulers
        schedules = [(part.scheduler, live.get(part.name)) for part in session.spec.parts]
    else:
        schedules = [(session.spec.scheduler, session.scheduler)]
    for spec, scheduler in schedules:
        if spec is not None and scheduler is not None:
            _apply_arguments(spec, scheduler)


def _apply_arguments(spec: SchedulerSpec, scheduler: Any) -> None:
    pairs = [(spec.component, scheduler)]
    pairs += list(zip(spec.children, getattr(scheduler, "_schedulers", []), strict=False))
    for component, live in pairs:
        for key, value in component.arguments.items():
            if key in vars(live) and not key.startswith("_"):
                setattr(live, key, value)
