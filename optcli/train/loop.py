"""The training loop: zero_grad -> forward -> backward -> clip -> step -> schedule, producing records.

On an accelerator nothing here waits for the device per step: losses and gradient norms stay on the
device and are copied to the host in batches (`_to_host`, the loop's only sync point).
"""

from __future__ import annotations

import contextlib
import functools
import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import torch

from optcli.components.optimizers import needs_closure
from optcli.config.schema import ClipConfig
from optcli.errors import Interrupted, TrainingFailed
from optcli.train.evaluation import EarlyStopper, evaluate
from optcli.train.records import (
    CheckpointDue,
    EpochRecord,
    EvalRecord,
    Record,
    RunFinished,
    RunStarted,
    SkippedStep,
    StepRecord,
)
from optcli.train.session import Session

# Steps between host copies on an accelerator; on the CPU every step is copied (it costs nothing).
DEVICE_STEPS_PER_SYNC = 50


class NonFiniteLoss(TrainingFailed):
    def __init__(self, step: int, epoch: int, loss: float) -> None:
        self.step, self.epoch, self.loss = step, epoch, loss
        super().__init__(
            f"the loss became {loss} at step {step} (epoch {epoch}); training stopped. "
            "A lower optimizer.lr or gradient clipping (clip: {max_norm: 1.0}) usually helps"
        )


class TooManySkips(TrainingFailed):
    def __init__(self, step: int, epoch: int, count: int) -> None:
        self.step, self.epoch = step, epoch
        super().__init__(
            f"{count} steps in a row had a non-finite loss or gradient (the last at step {step}, epoch {epoch}); "
            "training stopped (train.max_skips). A lower optimizer.lr or gradient clipping usually helps"
        )


class _PendingStep(NamedTuple):
    step: int
    loss: torch.Tensor  # still on the device
    lr: float
    grad_norm: torch.Tensor | None
    elapsed_s: float
    logged: bool
    skipped: bool = False  # with on_nonfinite: skip, a step that was not applied


@dataclass
class LoopState:
    """Where training stands, besides the model, optimizer, scheduler and random generators: what a
    checkpoint must also hold to go on exactly as if nothing had happened."""

    epoch: int = 1  # the epoch in progress, or the next to start
    batches_done: int = 0  # of that epoch
    step: int = 0
    epoch_losses: list[float] = field(default_factory=list)  # that epoch's step losses so far
    elapsed_s: float = 0.0  # training time so far
    stopper: dict[str, Any] | None = None  # the early stopper's counters
    skipped_steps: int = 0
    skips_in_a_row: int = 0

    def to_dict(self) -> dict[str, Any]:
        return dict(vars(self), epoch_losses=list(self.epoch_losses))

    def snapshot(self, clock: TrainingClock, stopper: EarlyStopper | None) -> dict[str, Any]:
        """The state as of now, for a checkpoint: with the training time and the stopper's counters."""
        self.elapsed_s, self.stopper = clock.elapsed(), stopper.to_dict() if stopper else None
        return self.to_dict()

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> LoopState:
        return cls(**values)


class TrainingClock:
    """Training seconds: wall time since `start`, less the time spent outside the loop on its records."""

    def __init__(self) -> None:
        self.started = time.perf_counter()
        self.paused_s = 0.0
        self.offset_s = 0.0  # training time before a resume

    def start(self, offset_s: float = 0.0) -> None:
        self.started, self.paused_s, self.offset_s = time.perf_counter(), 0.0, offset_s

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """Time inside is not training time (evaluations)."""
        paused_at = time.perf_counter()
        try:
            yield
        finally:
            self.paused_s += time.perf_counter() - paused_at

    def elapsed(self) -> float:
        return time.perf_counter() - self.started - self.paused_s + self.offset_s


def run_training(
    session: Session, state: LoopState | None = None, stop_requested: Callable[[], bool] = lambda: False
) -> Iterator[Record]:
    """Train the session's model, yielding a record per logged step, per epoch, and at start and end.

    `state` resumes from a checkpoint (the session's objects already restored); `stop_requested` is
    asked after every step, and when it says yes the loop yields a checkpoint and raises Interrupted.
    Time spent by the caller on each record (writing CSV rows, drawing the table) is not training time.
    """
    clock = TrainingClock()
    for record in _train(session, clock, state or LoopState(), stop_requested):
        paused_at = time.perf_counter()  # (inline, not clock.paused(): this runs every step)
        yield record
        clock.paused_s += time.perf_counter() - paused_at


def _train(
    session: Session, clock: TrainingClock, state: LoopState, stop_requested: Callable[[], bool]
) -> Iterator[Record]:
    spec, model, optimizer, scheduler = session.spec, session.model, session.optimizer, session.scheduler
    interval = spec.scheduler.interval if spec.scheduler else None
    monitor = spec.scheduler.monitor if spec.scheduler else None
    parameters = [parameter for parameter in model.parameters() if parameter.requires_grad]
    uses_closure = needs_closure(optimizer)
    steps_per_sync = 1 if session.device.type == "cpu" else DEVICE_STEPS_PER_SYNC
    skip_nonfinite = spec.train.on_nonfinite == "skip"

    def forward_backward(
        inputs: torch.Tensor, targets: torch.Tensor, want_norm: bool
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        # Gradients accumulate in PyTorch: clear them (to None, which is cheaper than zeros).
        optimizer.zero_grad(set_to_none=True)
        loss = session.loss_function(model(inputs), targets)
        loss.backward()
        return loss, clip_gradients(parameters, spec.clip, want_norm)

    yield RunStarted(
        spec.epochs,
        len(session.batches),
        spec.total_steps,
        sum(p.numel() for p in parameters),
        session.init_hash,
        session.data_hash,
    )
    model.train()
    step = state.step
    lr = optimizer.param_groups[0]["lr"]
    eval_every = spec.train.eval_every
    batches_per_epoch = len(session.batches)
    stopping = spec.train.early_stopping
    stopper = EarlyStopper.from_config(stopping, state.stopper) if stopping else None
    stopped_early = None
    clock.start(state.elapsed_s)
    while state.epoch <= spec.epochs and step < spec.total_steps:
        epoch = state.epoch
        pending: list[_PendingStep] = []
        epoch_losses = state.epoch_losses
        first_batch = state.batches_done + 1
        for batch, (inputs, targets) in enumerate(
            session.batches.epoch(skip=state.batches_done), first_batch
        ):
            step += 1
            lr = float(optimizer.param_groups[0]["lr"])  # the rate this step uses, before any schedule
            logged = step % spec.train.log_every == 0
            if uses_closure:
                # LBFGS re-evaluates the loss itself: forward and backward run inside its step.
                loss, grad_norm = step_with_closure(
                    optimizer, functools.partial(forward_backward, inputs, targets), logged
                )
            else:
                loss, grad_norm = forward_backward(inputs, targets, logged or skip_nonfinite)
                # Note: in skip mode, a host-device sync point every step: the update waits for the check.
                if skip_nonfinite and not _finite(loss, grad_norm):
                    skipped = _PendingStep(step, loss.detach(), lr, grad_norm, clock.elapsed(), True, True)
                    yield from _skip_update(
                        optimizer, state, spec.train.max_skips, skipped, epoch, epoch_losses
                    )
                    state.batches_done, state.step = batch, step
                    continue
                state.skips_in_a_row = 0
                optimizer.step()
            if scheduler is not None and interval == "step":
                scheduler.step()
            pending.append(_PendingStep(step, loss.detach(), lr, grad_norm, clock.elapsed(), logged))
            if len(pending) >= steps_per_sync:
                yield from _to_host(pending, epoch, epoch_losses)
            state.batches_done, state.step = batch, step
            # Evaluate every eval_every steps, except at an epoch's last step: the epoch's end does.
            if (
                eval_every
                and step % eval_every == 0
                and batch != batches_per_epoch
                and step != spec.total_steps
            ):
                yield from _to_host(pending, epoch, epoch_losses)
                yield _evaluation(session, clock, "val", step, epoch)
            if stop_requested():  # Ctrl-C or SIGTERM: this step is done; keep it, and stop
                yield from _to_host(pending, epoch, epoch_losses)
                yield CheckpointDue("interrupted", epoch, step, state.snapshot(clock, stopper))
                raise Interrupted
            if step == spec.total_steps:
                break
        yield from _to_host(pending, epoch, epoch_losses)
        complete = state.batches_done == batches_per_epoch
        if not complete:  # max_steps ended the run mid-epoch: a resume with more steps goes on from here
            yield CheckpointDue("partial", epoch, step, state.snapshot(clock, stopper))
        metrics = _epoch_metrics(session, clock, epoch_losses, step, epoch)
        yield EpochRecord(
            epoch,
            step,
            metrics["train_loss"],
            lr,
            clock.elapsed(),
            metrics.get("val_loss"),
            metrics.get("val_accuracy"),
        )
        if scheduler is not None and interval == "epoch":
            # ReduceLROnPlateau decides from the monitored metric; the others follow the epoch count.
            scheduler.step(metrics[monitor]) if monitor else scheduler.step()
        if stopper is not None and stopper.should_stop(metrics[stopper.monitor], epoch):
            stopped_early = stopper.reason(epoch)
        if not complete:
            break
        # The next epoch starts here: this is a point to resume from.
        state.epoch, state.batches_done, state.epoch_losses = epoch + 1, 0, []
        yield CheckpointDue("epoch", epoch, step, state.snapshot(clock, stopper), metrics)
        if stopped_early:
            break
    last_epoch = state.epoch - 1 if state.batches_done == 0 else state.epoch
    if session.test_batches is not None:
        yield _evaluation(session, clock, "test", step, last_epoch)
    yield RunFinished(step, last_epoch, clock.elapsed(), stopped_early)


def _skip_update(
    optimizer: torch.optim.Optimizer,
    state: LoopState,
    max_skips: int,
    skipped: _PendingStep,
    epoch: int,
    epoch_losses: list[float],
) -> Iterator[Record]:
    """on_nonfinite: skip. The update is left out: parameters and the optimizer's state stay as they
    were. The step is logged (with its non-finite loss) and reported; too many in a row stop the run."""
    optimizer.zero_grad(set_to_none=True)
    state.skipped_steps += 1
    state.skips_in_a_row += 1
    yield from _to_host([skipped], epoch, epoch_losses)
    yield SkippedStep(skipped.step, epoch, float(skipped.loss), state.skips_in_a_row)
    if state.skips_in_a_row >= max_skips:
        raise TooManySkips(skipped.step, epoch, state.skips_in_a_row)


def _epoch_metrics(
    session: Session, clock: TrainingClock, epoch_losses: list[float], step: int, epoch: int
) -> dict[str, float]:
    """The epoch's mean training loss (of its applied steps), and its validation metrics."""
    finite_losses = [loss for loss in epoch_losses if math.isfinite(loss)]
    metrics = {"train_loss": math.fsum(finite_losses) / len(finite_losses) if finite_losses else math.nan}
    if session.val_batches is not None:
        evaluation = _evaluation(session, clock, "val", step, epoch)
        metrics["val_loss"] = evaluation.loss
        if evaluation.accuracy is not None:
            metrics["val_accuracy"] = evaluation.accuracy
    return metrics


def _finite(loss: torch.Tensor, grad_norm: torch.Tensor | None) -> bool:
    finite = torch.isfinite(loss) if grad_norm is None else torch.isfinite(loss) & torch.isfinite(grad_norm)
    return bool(finite)


def _evaluation(session: Session, clock: TrainingClock, split: str, step: int, epoch: int) -> EvalRecord:
    batches = session.val_batches if split == "val" else session.test_batches
    assert batches is not None
    with clock.paused():  # evaluation is not training time
        loss, accuracy = evaluate(
            session.model, batches, session.loss_function, session.spec.data.is_classification
        )
    return EvalRecord(split, step, epoch, loss, accuracy, clock.elapsed())


def step_with_closure(
    optimizer: torch.optim.Optimizer,
    forward_backward: Callable[[bool], tuple[torch.Tensor, torch.Tensor | None]],
    want_norm: bool,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """One step of an optimizer that needs a closure; the first evaluation is the step's loss."""
    evaluations: list[tuple[torch.Tensor, torch.Tensor | None]] = []

    def closure() -> torch.Tensor:
        evaluations.append(forward_backward(want_norm and not evaluations))
        return evaluations[-1][0]

    optimizer.step(closure)  # type: ignore[arg-type]
    return evaluations[0]


def clip_gradients(
    parameters: Sequence[torch.Tensor], clip: ClipConfig | None, want_norm: bool
) -> torch.Tensor | None:
    """Clip as configured; return the total gradient norm before clipping when it is wanted or free."""
    if clip is not None and clip.max_norm is not None:
        return torch.nn.utils.clip_grad_norm_(parameters, clip.max_norm, clip.norm_type)  # returns the norm
    grad_norm = None
    if want_norm:
        grad_norm = torch.nn.utils.get_total_norm([p.grad for p in parameters if p.grad is not None])
    if clip is not None and clip.value is not None:
        torch.nn.utils.clip_grad_value_(parameters, clip.value)
    return grad_norm


def _to_host(pending: list[_PendingStep], epoch: int, epoch_losses: list[float]) -> Iterator[StepRecord]:
    """Copy pending losses and norms to the host in one go, yield the logged rows, and stop on a non-finite loss."""
    if not pending:
        return
    # Note: a host-device sync point, once per `steps_per_sync` steps.
    losses = _to_floats([item.loss for item in pending])
    norms = iter(
        _to_floats([item.grad_norm for item in pending if item.logged and item.grad_norm is not None])
    )
    items = list(pending)
    pending.clear()
    for item, loss in zip(items, losses, strict=True):
        grad_norm = next(norms) if item.logged and item.grad_norm is not None else None
        finite = math.isfinite(loss)
        if not item.skipped:
            epoch_losses.append(loss)
        if item.logged or not finite:
            yield StepRecord(item.step, epoch, loss, item.lr, grad_norm, item.elapsed_s)
        if not finite and not item.skipped:
            raise NonFiniteLoss(item.step, epoch, loss)


def _to_floats(tensors: list[torch.Tensor]) -> list[float]:
    """Scalars to Python floats in one copy; a single one (every step on the CPU) skips the stack."""
    if len(tensors) <= 1:
        return [tensor.item() for tensor in tensors]
    return torch.stack(tensors).tolist()
