"""Where training stands (what a checkpoint holds besides the model, optimizer, scheduler and random
generators), what every step needs to know, and the clock that counts training time."""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any

from optcli.config.spec import optimizer_steps
from optcli.train.step import Compilation, StepParts

if TYPE_CHECKING:
    from optcli.train.session import Session


@dataclass
class LoopState:
    """Everything the loop needs, besides the live objects, to go on exactly as if nothing had happened."""

    epoch: int = 1  # the epoch in progress, or the next to start
    batches_done: int = 0  # of that epoch
    step: int = 0
    epoch_losses: list[float] = field(default_factory=list)  # that epoch's step losses so far
    elapsed_s: float = 0.0  # training time so far
    stopper: dict[str, Any] | None = None  # the early stopper's counters
    skips_in_a_row: int = 0
    scaler_skips: int = 0  # fp16: steps the gradient scaler skipped (inf or NaN gradients)
    # The best value so far of each epoch metric, and its epoch: the one record of the run's bests,
    # which the summary and the choice of best.pt both follow.
    best: dict[str, tuple[float, int]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """A copy that later steps cannot change (asked at every epoch's end: written by hand, as
        dataclasses.asdict's deep copy cost more than a small model's step)."""
        values = {name: getattr(self, name) for name in _FIELDS}
        values["epoch_losses"] = list(self.epoch_losses)
        values["stopper"] = copy.deepcopy(self.stopper)
        values["best"] = dict(self.best)  # (its values are tuples: immutable)
        return values

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> LoopState:
        """The state a checkpoint holds (one of an earlier optcli may lack the bests, or hold more)."""
        known = {key: value for key, value in values.items() if key in {field.name for field in fields(cls)}}
        best = {
            metric: (float(value), int(epoch)) for metric, (value, epoch) in values.get("best", {}).items()
        }
        return cls(**{**known, "best": best})

    def note_bests(
        self, metrics: dict[str, float], epoch: int, direction: Callable[[str], str]
    ) -> tuple[str, ...]:
        """Record the epoch's metrics; return those that are the best so far (finite values only).
        `direction`: which way each metric is better (RunSpec.direction)."""
        improved = []
        for metric, value in metrics.items():
            previous = self.best.get(metric)
            if not math.isfinite(value):
                continue
            if previous is None or (
                value > previous[0] if direction(metric) == "max" else value < previous[0]
            ):
                self.best[metric] = (value, epoch)
                improved.append(metric)
        return tuple(improved)


_FIELDS = tuple(field.name for field in fields(LoopState))


@dataclass(frozen=True)
class LoopPlan:
    """What the loop around the steps needs to know, settled once before the first."""

    step: StepParts  # what every optimizer step uses (step.py)
    epoch_scheduler: Any | None  # stepped after every epoch (interval: epoch)
    steps_per_sync: int  # steps whose values wait on the device for one copy to the host
    accumulate: int  # micro-batches per optimizer step
    compile: Compilation  # train.compile: compiling (each new batch shape) is off the training clock

    def steps_left(self, batches: int) -> int:
        """Optimizer steps that `batches` micro-batches make (a short last group is a step too)."""
        return optimizer_steps(batches, self.accumulate)

    @property
    def trainable(self) -> int:
        """How many numbers training changes."""
        return sum(parameter.numel() for parameter in self.step.parameters)

    @classmethod
    def of(cls, session: Session, steps_per_sync: int) -> LoopPlan:
        spec = session.spec
        interval = spec.stepping.interval if spec.stepping else None
        return cls(
            StepParts.of(session),
            session.scheduler if interval == "epoch" else None,
            steps_per_sync,
            spec.train.accumulate,
            Compilation(spec.train.compile is not False),
        )
