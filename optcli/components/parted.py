"""Several optimizers that the loop sees as one: `optimizer.parts` (Muon for the matrices, AdamW for
the rest, say).

`PartedOptimizer` is a torch Optimizer whose `param_groups` are its parts' own group dicts, in the
parts' order: a scheduler built on it moves each part's rate from that part's own base rate, and
zero_grad, the AMP scaler's unscale, clipping and skips work on it unchanged. A step steps every
part, in order; its state dict is the parts' state dicts, by name, so a checkpoint restores each part
exactly. `PartSchedulers` is the same idea for schedulers of the parts' own.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

import torch

from optcli.components.optimizers import has_modes


class _PartsState(Mapping[torch.Tensor, Any]):
    """The parts' `state`, read as one mapping (their parameters are disjoint)."""

    def __init__(self, parts: dict[str, torch.optim.Optimizer]) -> None:
        self._parts = parts

    def __getitem__(self, parameter: torch.Tensor) -> Any:
        for optimizer in self._parts.values():
            if parameter in optimizer.state:
                return optimizer.state[parameter]
        raise KeyError(parameter)

    def __iter__(self) -> Iterator[torch.Tensor]:
        for optimizer in self._parts.values():
            yield from optimizer.state

    def __len__(self) -> int:
        return sum(len(optimizer.state) for optimizer in self._parts.values())


class PartedOptimizer(torch.optim.Optimizer):
    """Named optimizers over disjoint parameters, stepped as one."""

    def __init__(self, parts: dict[str, torch.optim.Optimizer]) -> None:
        self.parts = parts
        # The parts' group dicts themselves (not copies): what a scheduler sets here, the part steps with.
        super().__init__([group for part in parts.values() for group in part.param_groups], defaults={})
        self.state = _PartsState(parts)  # type: ignore[assignment]
        if any(has_modes(part) for part in parts.values()):  # a schedule-free part: train() and eval()
            self.train = lambda: self._set_mode("train")  # type: ignore[attr-defined]
            self.eval = lambda: self._set_mode("eval")  # type: ignore[attr-defined]

    def group_spans(self) -> dict[str, range]:
        """Each part's groups' indices in `param_groups`."""
        spans, start = {}, 0
        for name, part in self.parts.items():
            spans[name] = range(start, start + len(part.param_groups))
            start += len(part.param_groups)
        return spans

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:  # type: ignore[override]
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for part in self.parts.values():
            part.step()
        return loss

    def zero_grad(self, set_to_none: bool = True) -> None:
        for part in self.parts.values():
            part.zero_grad(set_to_none=set_to_none)

    def state_dict(self) -> dict[str, Any]:
        return {"parts": {name: part.state_dict() for name, part in self.parts.items()}}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        saved = state_dict.get("parts") if isinstance(state_dict, dict) else None
        if not isinstance(saved, dict) or list(saved) != list(self.parts):
            found = list(saved) if isinstance(saved, dict) else "one optimizer"
            raise ValueError(f"the saved optimizer has parts {found}, the config {list(self.parts)}")
        for name, part in self.parts.items():
            part.load_state_dict(saved[name])
        # Loading gives each part new group dicts: this optimizer (and its scheduler) follows them.
        self.param_groups = [group for part in self.parts.values() for group in part.param_groups]

    def _set_mode(self, mode: str) -> None:
        for part in self.parts.values():
            if has_modes(part):
                getattr(part, mode)()

    def __repr__(self) -> str:
        return " + ".join(f"{name}: {type(part).__name__}" for name, part in self.parts.items())


class PartSchedulers:
    """The parts' own schedulers, stepped together (parts without one keep their rate)."""

    def __init__(self, schedulers: dict[str, Any]) -> None:
        self.schedulers = schedulers

    def step(self, metric: float | None = None) -> None:
        for scheduler in self.schedulers.values():
            if metric is not None and isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
                scheduler.step(metric)
            else:
                scheduler.step()

    def state_dict(self) -> dict[str, Any]:
        return {name: scheduler.state_dict() for name, scheduler in self.schedulers.items()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        for name, scheduler in self.schedulers.items():
            scheduler.load_state_dict(state_dict[name])
