"""How one optimizer step's gradients are made: forward and backward over its micro-batches
(`train.accumulate`), under autocast (`train.precision`), scaled by fp16's GradScaler, and the step
itself, which that scaler may skip.

Accumulation weights each micro-batch's mean loss by its share of the step's samples, so that the
accumulated gradient is the gradient of the mean loss over every sample of the step: a short last
group (or a short last batch) counts by its samples, not by its number of micro-batches.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager as ContextManager
from typing import TYPE_CHECKING, Any

import torch

from optcli.components.forward import Forward
from optcli.data.loader import batch_length
from optcli.errors import TrainingFailed
from optcli.train.distributed import ALONE, World, sum_across
from optcli.train.state import TrainingClock

if TYPE_CHECKING:
    from optcli.train.session import Session

AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


NO_CONTEXT = contextlib.nullcontext()  # reusable: entering it does nothing


def autocast_for(precision: str, device: torch.device) -> Callable[[], ContextManager[Any]]:
    """The context the forward pass and the loss run in: autocast, or nothing at full precision."""
    if precision not in AUTOCAST_DTYPES:
        return lambda: NO_CONTEXT
    dtype = AUTOCAST_DTYPES[precision]
    return lambda: torch.autocast(device.type, dtype=dtype)


def micro_batch_groups(batches: Iterator[Any], size: int) -> Iterator[list[Any]]:
    """The epoch's batches in groups of `size` (the last may be shorter): one group per optimizer step."""
    group: list[Any] = []
    for batch in batches:
        group.append(batch)
        if len(group) == size:
            yield group
            group = []
    if group:
        yield group


def total_norm(gradients: list[torch.Tensor]) -> torch.Tensor:
    """The 2-norm of all the gradients together, as torch.nn.utils.get_total_norm computes it, without
    its grouping by device and dtype when there is one group: that halves its cost on a small model,
    where it is paid at every logged step."""
    first = gradients[0] if gradients else None
    if first is None or any(g.device != first.device or g.dtype != first.dtype for g in gradients):
        return torch.nn.utils.get_total_norm(gradients)
    return torch.linalg.vector_norm(torch.stack(torch._foreach_norm(gradients)))


class CompileFailed(TrainingFailed):
    pass


@contextlib.contextmanager
def _compile_errors() -> Iterator[None]:
    """torch.compile's own errors (tracing, the backend's compiler) as a message naming train.compile."""
    from torch._dynamo.exc import TorchDynamoException

    try:
        yield
    except TorchDynamoException as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise CompileFailed(
            f"train.compile: torch.compile failed at the first step: {type(error).__name__}: {first[:400]}; "
            "set train.compile: false to train without it (--debug shows the traceback)"
        ) from error


class Gradients:
    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        forward: Forward,
        autocast: Callable[[], ContextManager[Any]],
        scaler: torch.amp.GradScaler | None,
        clock: TrainingClock,
        compiled: bool,
        world: World = ALONE,
        global_size: Callable[[int], int] = lambda index: 0,
        parallel: Any = None,
    ) -> None:
        self.optimizer, self.forward, self.autocast, self.scaler = optimizer, forward, autocast, scaler
        self.clock = clock
        # The scale before the coming step: a step the scaler skips lowers it (fp16 only).
        self.scale = scaler.get_scale() if scaler is not None else 1.0
        # torch.compile compiles at the first forward and backward: that time is not training time.
        self.compile_pending = compiled
        self.compile_s: float | None = None
        # Several processes: each holds its part of every global batch (`global_size(i)` samples in
        # all), and DistributedDataParallel (`parallel`) averages their gradients.
        self.world, self.global_size, self.parallel = world, global_size, parallel

    def forward_backward(
        self, model: torch.nn.Module, loss_function: torch.nn.Module, group: Sequence[Any], first: int = 0
    ) -> torch.Tensor:
        """Forward and backward over the step's micro-batches (the epoch's batches `first`, ...); the
        mean loss of its samples, over every process."""
        if self.compile_pending:
            self.compile_pending = False
            started = time.perf_counter()
            with self.clock.paused(), _compile_errors():
                loss = self._forward_backward(model, loss_function, group, first)
            self.compile_s = time.perf_counter() - started
            return loss
        return self._forward_backward(model, loss_function, group, first)

    def _forward_backward(
        self, model: torch.nn.Module, loss_function: torch.nn.Module, group: Sequence[Any], first: int
    ) -> torch.Tensor:
        if len(group) == 1 and not self.world.active:
            with self.autocast():
                loss = self.forward(model, loss_function, group[0])[0]
            self._backward(loss)
            return loss
        sizes = [batch_length(batch) for batch in group]
        if self.world.active:  # the step's samples over every process
            total = sum(self.global_size(index) for index in range(first, first + len(group)))
        else:
            total = sum(sizes)
        parts = []
        for index, (batch, size) in enumerate(zip(group, sizes, strict=True)):
            # This micro-batch's share of the step's samples (times the processes, whose gradients
            # DistributedDataParallel averages: then 1 exactly when every part is alike).
            share = size / total
            weight = share * self.world.size
            with self._sync_unless_last(index == len(group) - 1):
                with self.autocast():
                    loss = self.forward(model, loss_function, batch)[0]
                weighted = loss * weight if weight != 1.0 else loss
                self._backward(weighted)
            parts.append(weighted.detach() if weight == share else loss.detach() * share)
        step_loss = parts[0] if len(parts) == 1 else torch.stack(parts).sum()
        return sum_across(self.world, step_loss)  # the mean over every process's samples

    def _sync_unless_last(self, last: bool) -> ContextManager[Any]:
        """DistributedDataParallel averages gradients at the step's last backward only."""
        if self.parallel is None or last:
            return NO_CONTEXT
        return self.parallel.no_sync()  # type: ignore[no-any-return]

    def _backward(self, loss: torch.Tensor) -> None:
        (self.scaler.scale(loss) if self.scaler is not None else loss).backward()

    def unscale(self) -> None:
        """fp16: gradients back to their true size before clipping, so that clip and the logged norm
        mean what they say."""
        if self.scaler is not None:
            self.scaler.unscale_(self.optimizer)

    def drop(self) -> None:
        """The step's gradients thrown away unapplied (on_nonfinite: skip); the scaler moves on."""
        self.optimizer.zero_grad(set_to_none=True)
        if self.scaler is not None:
            self.scaler.update()

    def finite_check(self, grad_norm: torch.Tensor | None) -> torch.Tensor | None:
        """What the skip policy checks besides the loss: the gradient norm, unless fp16's scaler
        handles non-finite gradients itself (by skipping the step and lowering its scale)."""
        return grad_norm if self.scaler is None else None

    def step(self) -> bool:
        """The optimizer step; False when fp16's scaler skipped it (inf or NaN gradients)."""
        if self.scaler is None:
            self.optimizer.step()
            return True
        self.scaler.step(self.optimizer)
        self.scaler.update()
        # Note: a host-device sync point, every step with fp16 (the scale is read back to know whether
        # the step was applied, as Lightning and accelerate do): a per-step scheduler must not move
        # past a skipped step.
        before, self.scale = self.scale, self.scaler.get_scale()
        return self.scale >= before


def gradients_for(session: Session, clock: TrainingClock) -> Gradients:
    """How the session's steps make their gradients: its precision, accumulation, compilation and
    processes."""
    spec, world = session.spec, session.world
    return Gradients(
        session.optimizer,
        spec.forward,
        autocast_for(spec.train.precision, session.device),
        session.scaler,
        clock,
        spec.train.compile is not False,
        world,
        session.batches.global_size,
        session.parallel,
    )
