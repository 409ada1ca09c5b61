"""Before training: can this optimizer take a step the way optcli's loop takes it, and does its
`state_dict()` bring it back exactly? Tried on small real stand-ins of the model's parameters.

optcli treats an optimizer's state dict as opaque (a wrapper such as Lookahead nests its own layout),
so the only way to know that a resumed run will equal an uninterrupted one is to try it: take three
steps on one copy; take one step on another, save its state through the checkpoint's own path
(`torch.save`, then `torch.load(weights_only=True)`) into a fresh optimizer, take the other two, and
compare the weights bit for bit. Each step draws from freshly seeded generators, as a resumed run's
restored generators would. A mistake found here is a config error before any file is written,
instead of a crash (or a silently different resume) after the first epoch.
"""

from __future__ import annotations

import contextlib
import io
import random
from collections.abc import Iterator, Sequence
from typing import Any

import numpy
import torch

from optcli.components.optimizers import class_needs_closure, set_optimizer_mode
from optcli.config.init_and_groups import ParamGroup
from optcli.config.parts import build_on
from optcli.config.spec import Component
from optcli.seeds import seed_everything

STAND_IN_SIDE = 8  # each dimension of a stand-in parameter, at most: the rank is kept, the size bounded
NO_CHECKPOINTS = "set train.checkpoint: false to train without checkpoints (a run that cannot be resumed)"


def probe_optimizer(
    optimizer: Component,
    shapes: Sequence[tuple[str, torch.Size]],
    groups: tuple[ParamGroup, ...],
    checkpoints: bool,
) -> str | None:
    """Why this optimizer cannot train (or be checkpointed and resumed exactly), or None when it can."""
    if not shapes:
        return None
    # (Gradients on, whatever the caller's mode: a probe from code under torch.no_grad() still steps.)
    with _isolated_generators(), torch.enable_grad():
        try:
            uninterrupted = _Trial(optimizer, shapes, groups)
            for step in range(3):
                uninterrupted.step(step)
        except Exception as error:
            return _step_failure(error)
        if not all(bool(torch.isfinite(value).all()) for value in uninterrupted.values()):
            return (
                "three of its steps on small stand-in parameters (gradients of about 1) made them infinite "
                "or nan: its arguments overflow (an lr of 1e308?)"
            )
        if not checkpoints:
            return None
        first = _Trial(optimizer, shapes, groups)
        first.step(0)
        try:
            state = _through_a_checkpoint(first.optimizer.state_dict())
            resumed = _Trial(optimizer, shapes, groups, values=first.values())
            resumed.optimizer.load_state_dict(state)
        except Exception as error:
            return (
                f"its state cannot be saved in a checkpoint and restored ({type(error).__name__}: "
                f"{_first_line(error)}); {NO_CHECKPOINTS}"
            )
        for step in (1, 2):
            resumed.step(step)
    if not all(torch.equal(a, b) for a, b in zip(uninterrupted.values(), resumed.values(), strict=True)):
        return (
            "its state_dict() does not restore it exactly (a resumed run would differ from an "
            f"uninterrupted one: it keeps state outside its state dict); {NO_CHECKPOINTS}"
        )
    return None


class _Trial:
    """Stand-in parameters of the model's shapes (each side at most STAND_IN_SIDE), in the config's
    parameter groups, and the optimizer built on them. A step is optcli's: zero_grad, backward of a
    quadratic loss, step (through a closure for optimizers that need one)."""

    def __init__(
        self,
        optimizer: Component,
        shapes: Sequence[tuple[str, torch.Size]],
        groups: tuple[ParamGroup, ...],
        values: list[torch.Tensor] | None = None,
    ) -> None:
        generator = torch.Generator().manual_seed(0)
        self.parameters = [
            torch.nn.Parameter(torch.randn(_bounded(shape), generator=generator)) for _, shape in shapes
        ]
        self.targets = [torch.randn(p.shape, generator=generator) for p in self.parameters]
        if values is not None:
            with torch.no_grad():
                for parameter, value in zip(self.parameters, values, strict=True):
                    parameter.copy_(value)
        named = [(name, parameter) for (name, _), parameter in zip(shapes, self.parameters, strict=True)]
        self.optimizer = build_on(optimizer, named, groups)
        set_optimizer_mode(self.optimizer, "train")
        self.closure = class_needs_closure(type(self.optimizer))

    def loss(self) -> torch.Tensor:
        self.optimizer.zero_grad(set_to_none=True)
        loss = sum(((p - t) ** 2).sum() for p, t in zip(self.parameters, self.targets, strict=True))
        assert isinstance(loss, torch.Tensor)
        loss.backward()
        return loss

    def step(self, number: int) -> None:
        seed_everything(number)
        if self.closure:
            self.optimizer.step(self.loss)
        else:
            self.loss()
            self.optimizer.step()

    def values(self) -> list[torch.Tensor]:
        return [parameter.detach().clone() for parameter in self.parameters]


def _bounded(shape: torch.Size) -> tuple[int, ...]:
    return tuple(min(side, STAND_IN_SIDE) for side in shape)


def _through_a_checkpoint(state: dict[str, Any]) -> Any:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


def _step_failure(error: Exception) -> str:
    text = _first_line(error)
    if "create_graph" in text or "grad_fn" in text or "hessian" in text.lower():
        why = "it needs second-order gradients (backward with create_graph=True), which optcli's loop does not take"
    elif "overflow" in text:
        why = "its arguments overflow the parameters' float type (an lr of 1e308?)"
    else:
        why = "it failed a step taken as optcli's loop takes it"
    return f"{why} ({type(error).__name__}: {text})"


def _first_line(error: Exception) -> str:
    lines = str(error).strip().splitlines()
    # torch.load(weights_only=True) explains itself over many lines; the class it refused is the news.
    refused = [line.strip() for line in lines if "Unsupported global" in line]
    return (refused or lines or [type(error).__name__])[0]


@contextlib.contextmanager
def _isolated_generators() -> Iterator[None]:
    """The probe draws from the global generators; the run's own draws are left as they were."""
    python, numpy_state = random.getstate(), numpy.random.get_state()
    with torch.random.fork_rng(devices=[]):
        try:
            yield
        finally:
            random.setstate(python)
            numpy.random.set_state(numpy_state)
