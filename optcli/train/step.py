"""One optimizer step, top to bottom: `take_step`.

zero_grad -> forward and backward over the step's micro-batches (train.accumulate; DistributedDataParallel
averaging at the last one only; under autocast with train.precision; scaled for fp16) -> unscale ->
clip -> step, or skip it -> schedule. The values it returns stay on the device: the loop copies them
to the host in batches (host_copies.py), so an ordinary step never waits for an accelerator.

Accumulation weights each micro-batch's mean loss by its share of the step's samples, so that the
accumulated gradient is the gradient of the mean loss over every sample of the step: a short last
group (or a short last batch) counts by its samples, not by its number of micro-batches.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager as ContextManager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import torch

from optcli.components.forward import Forward
from optcli.components.optimizers import needs_closure
from optcli.config.schema import ClipConfig
from optcli.data.loader import batch_length
from optcli.errors import TrainingFailed
from optcli.train.distributed import ALONE, World, sum_across

if TYPE_CHECKING:
    from optcli.train.clock import TrainingClock
    from optcli.train.session import Session

AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
NO_CONTEXT = contextlib.nullcontext()  # reusable: entering it does nothing


@dataclass(frozen=True)
class StepResult:
    loss: torch.Tensor  # the mean loss of the step's samples, over every process (on the device)
    grad_norm: torch.Tensor | None  # the gradients' total norm before clipping, when asked for or free
    # applied; skipped by the fp16 scaler (inf or nan gradients); or left out whole (on_nonfinite: skip)
    outcome: Literal["applied", "scaler_skipped", "skipped"]


@dataclass(kw_only=True)
class StepParts:
    """What every step of a run uses, settled once before the first (named at construction: fifteen
    fields are too many to keep in order)."""

    model: torch.nn.Module  # what the step calls: the model, or torch.compile's or DDP's wrapper of it
    optimizer: torch.optim.Optimizer
    loss_function: torch.nn.Module
    forward: Forward  # how a batch becomes a loss (components/forward.py)
    parameters: list[torch.Tensor]  # the trainable ones: clipped, and their norm logged
    clip: ClipConfig | None
    autocast: Callable[[], ContextManager[Any]]  # train.precision's context, or none
    scaler: torch.amp.GradScaler | None  # train.precision: fp16
    step_scheduler: Any | None  # stepped after every applied step (scheduler.interval: step)
    skip_nonfinite: bool  # train.on_nonfinite: skip
    closure: bool  # LBFGS and its kind evaluate the loss inside their own step
    world: World = ALONE  # several processes: DistributedDataParallel (`parallel`) averages
    parallel: Any = None
    global_size: Callable[[int], int] = lambda index: 0  # samples of global batch `index`, over every process
    scale: float = field(default=1.0)  # fp16: the scaler's scale before the coming step

    @classmethod
    def of(cls, session: Session) -> StepParts:
        spec = session.spec
        interval = spec.stepping.interval if spec.stepping else None
        return cls(
            model=session.wrapped_model,
            optimizer=session.optimizer,
            loss_function=session.loss_function,
            forward=spec.forward,
            parameters=[parameter for parameter in session.model.parameters() if parameter.requires_grad],
            clip=spec.clip,
            autocast=autocast_for(spec.train.precision, session.device),
            scaler=session.scaler,
            step_scheduler=session.scheduler if interval == "step" else None,
            skip_nonfinite=spec.train.on_nonfinite == "skip",
            closure=needs_closure(session.optimizer),
            world=session.world,
            parallel=session.parallel,
            global_size=session.batches.global_size,
            scale=session.scaler.get_scale() if session.scaler is not None else 1.0,
        )


def take_step(parts: StepParts, group: Sequence[Any], first: int, want_norm: bool) -> StepResult:
    """One optimizer step on a group of micro-batches (the epoch's batches `first`, `first + 1`, ...)."""
    if parts.closure:
        return _closure_step(parts, group[0], want_norm)
    # Zero: gradients accumulate in PyTorch; clear them (to None, which is cheaper than zeros).
    parts.optimizer.zero_grad(set_to_none=True)
    # Forward and backward, micro-batch by micro-batch, each weighted by its share of the step's samples
    # (times the processes, whose gradients DDP averages: then 1 exactly when every part is alike).
    losses = []
    shares = _shares(parts, group, first)
    for index, (batch, share) in enumerate(zip(group, shares, strict=True)):
        weight = share * parts.world.size
        not_last = parts.parallel is not None and index < len(group) - 1
        with parts.parallel.no_sync() if not_last else NO_CONTEXT:  # DDP averages at the last backward
            with parts.autocast():
                loss = parts.forward(parts.model, parts.loss_function, batch)[0]
            weighted = loss * weight if weight != 1.0 else loss
            (parts.scaler.scale(weighted) if parts.scaler is not None else weighted).backward()
        losses.append(weighted.detach() if weight == share else loss.detach() * share)
    step_loss = sum_across(parts.world, losses[0] if len(losses) == 1 else torch.stack(losses).sum())
    # Unscale (fp16): the gradients back to their true size, so that clipping and the norm mean what they say.
    if parts.scaler is not None:
        parts.scaler.unscale_(parts.optimizer)
    # Clip as configured; the norm before clipping is what gets logged.
    grad_norm = clip_gradients(parts.parameters, parts.clip, want_norm or parts.skip_nonfinite)
    # Skip (on_nonfinite: skip): a non-finite step is left out whole, its update and its per-step schedule
    # alike, as AMP's scaler skips a step. Note: a host-device sync point, every step in this mode.
    if parts.skip_nonfinite and not _finite(step_loss, grad_norm if parts.scaler is None else None):
        parts.optimizer.zero_grad(set_to_none=True)
        if parts.scaler is not None:
            parts.scaler.update()
        return StepResult(step_loss, grad_norm, "skipped")
    # Step: update the parameters from their gradients (fp16's scaler skips inf or nan gradients).
    applied = _optimizer_step(parts)
    # Schedule (per step): the rate of the next step; a step the scaler skipped does not count.
    if applied and parts.step_scheduler is not None:
        parts.step_scheduler.step()
    return StepResult(step_loss, grad_norm, "applied" if applied else "scaler_skipped")


def _shares(parts: StepParts, group: Sequence[Any], first: int) -> list[float]:
    """Each micro-batch's share of the step's samples, over every process."""
    if len(group) == 1 and not parts.world.active:
        return [1.0]
    sizes = [batch_length(batch) for batch in group]
    if parts.world.active:  # the step's samples over every process
        total = sum(parts.global_size(index) for index in range(first, first + len(group)))
    else:
        total = sum(sizes)
    return [size / total for size in sizes]


def _optimizer_step(parts: StepParts) -> bool:
    """optimizer.step(), through fp16's scaler if any; False when the scaler skipped it."""
    if parts.scaler is None:
        parts.optimizer.step()
        return True
    parts.scaler.step(parts.optimizer)
    parts.scaler.update()
    # Note: a host-device sync point, every step with fp16 (the scale is read back to know whether the
    # step was applied, as Lightning and accelerate do): a per-step scheduler must not move past a skip.
    before, parts.scale = parts.scale, parts.scaler.get_scale()
    return parts.scale >= before


def _closure_step(parts: StepParts, batch: Any, want_norm: bool) -> StepResult:
    """LBFGS evaluates the loss several times per step: zero_grad, forward, backward and clip run inside
    its closure, and the first evaluation is the step's loss."""
    evaluations: list[tuple[torch.Tensor, torch.Tensor | None]] = []

    def closure() -> torch.Tensor:
        parts.optimizer.zero_grad(set_to_none=True)
        loss = parts.forward(parts.model, parts.loss_function, batch)[0]
        loss.backward()
        evaluations.append(
            (loss, clip_gradients(parts.parameters, parts.clip, want_norm and not evaluations))
        )
        return loss

    parts.optimizer.step(closure)  # type: ignore[arg-type]
    if parts.step_scheduler is not None:
        parts.step_scheduler.step()
    loss, grad_norm = evaluations[0]
    return StepResult(loss.detach(), grad_norm, "applied")


def clip_gradients(
    parameters: Sequence[torch.Tensor], clip: ClipConfig | None, want_norm: bool
) -> torch.Tensor | None:
    """Clip as configured; return the total gradient norm before clipping when it is wanted or free."""
    if clip is not None and clip.max_norm is not None:
        return torch.nn.utils.clip_grad_norm_(parameters, clip.max_norm, clip.norm_type)  # returns the norm
    grad_norm = None
    if want_norm:
        grad_norm = total_norm([p.grad for p in parameters if p.grad is not None])
    if clip is not None and clip.value is not None:
        torch.nn.utils.clip_grad_value_(parameters, clip.value)
    return grad_norm


def total_norm(gradients: list[torch.Tensor]) -> torch.Tensor:
    """The 2-norm of all the gradients together, as torch.nn.utils.get_total_norm computes it, without
    its grouping by device and dtype when there is one group: that halves its cost on a small model,
    where it is paid at every logged step."""
    first = gradients[0] if gradients else None
    if first is None or any(g.device != first.device or g.dtype != first.dtype for g in gradients):
        return torch.nn.utils.get_total_norm(gradients)
    return torch.linalg.vector_norm(torch.stack(torch._foreach_norm(gradients)))


def _finite(loss: torch.Tensor, grad_norm: torch.Tensor | None) -> bool:
    finite = torch.isfinite(loss) if grad_norm is None else torch.isfinite(loss) & torch.isfinite(grad_norm)
    return bool(finite)


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


class CompileFailed(TrainingFailed):
    pass


class Compilation:
    """train.compile: torch.compile compiles at the first step, and again at the first step of each
    new batch shape (an epoch's short last batch); that time is not training time (summary.json's
    compile_time_s and recompilations), and its errors are a message naming train.compile."""

    def __init__(self, compiled: bool) -> None:
        self.compiled = compiled
        self.shapes: set[tuple[tuple[int, ...], ...]] = set()  # the batch shapes compiled for
        self.seconds: float | None = None
        self.recompilations = 0

    def due(self, group: list[Any]) -> bool:
        """Whether this step's batch shape is one torch.compile has not compiled for yet."""
        return self.compiled and _shapes(group[0]) not in self.shapes

    @contextlib.contextmanager
    def around(self, clock: TrainingClock, group: list[Any]) -> Iterator[None]:
        self.recompilations += bool(self.shapes)
        self.shapes.add(_shapes(group[0]))
        started = time.perf_counter()
        with clock.paused(), _compile_errors():
            yield
        self.seconds = (self.seconds or 0.0) + time.perf_counter() - started


def _shapes(batch: Any) -> tuple[tuple[int, ...], ...]:
    parts = batch.values() if isinstance(batch, dict) else batch
    return tuple(tuple(part.shape) for part in parts if isinstance(part, torch.Tensor))


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
