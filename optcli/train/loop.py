"""The training loop: zero_grad -> forward -> backward -> clip -> step -> schedule, producing records.

One optimizer step is `take_step` (step.py); this is the loop around it: epochs, evaluations, host
copies, checkpoints due, stops. Nothing here waits for an accelerator on an ordinary step: losses
and gradient norms stay on the device until `HostCopies` copies them in batches (its flush is the
loop's sync point), and several processes agree on stopping only at those points.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Generator, Iterator
from typing import Literal

from optcli.components.optimizers import set_optimizer_mode
from optcli.errors import Interrupted, TrainingFailed
from optcli.train.clock import TrainingClock
from optcli.train.evaluation import EarlyStopper, evaluate_split
from optcli.train.host_copies import DEVICE_STEPS_PER_SYNC, HostCopies, PendingStep, divergence_advice
from optcli.train.records import (
    CheckpointDue,
    EpochRecord,
    EvalRecord,
    Record,
    RunFinished,
    RunStarted,
    SkippedStep,
)
from optcli.train.session import Session
from optcli.train.state import LoopPlan, LoopState
from optcli.train.step import micro_batch_groups, take_step


class TooManySkips(TrainingFailed):
    def __init__(self, step: int, epoch: int, count: int, advice: str) -> None:
        super().__init__(
            f"{count} steps in a row had a non-finite loss or gradient (the last at step {step}, epoch {epoch}); "
            f"training stopped (train.max_skips). {advice}"
        )


def run_training(
    session: Session,
    state: LoopState | None = None,
    stop_requested: Callable[[], bool] = lambda: False,
    steps_per_sync: int | None = None,
    restore_best: Callable[[], int | None] = lambda: None,
    checkpoint_due: Callable[[], bool] = lambda: False,
) -> Iterator[Record]:
    """Train the session's model, yielding a record per logged step, per epoch, and at start and end.

    `state` resumes from a checkpoint (the session's objects already restored); `stop_requested` is
    asked after every step, and when it says yes the loop yields a checkpoint and raises Interrupted.
    `steps_per_sync` overrides how many steps wait for one host copy (1 on the CPU, else 50).
    `restore_best` puts the best checkpoint's weights into the model and returns its epoch (or None
    when there is none): the test data judges those with `train.test_on: best`. `checkpoint_due` says
    when a checkpoint is due by time within an epoch (asked where `stop_requested` is).
    Time spent by the caller on each record (writing CSV rows, drawing the table) is not training time.
    """
    clock = TrainingClock()
    if steps_per_sync is None:
        steps_per_sync = 1 if session.device.type == "cpu" else DEVICE_STEPS_PER_SYNC
    plan = LoopPlan.of(session, steps_per_sync)
    asks = _Asks(stop_requested, checkpoint_due, restore_best)
    for record in _train(session, plan, clock, state or LoopState(), asks):
        paused_at = time.perf_counter()  # (inline, not clock.paused(): this runs every step)
        yield record
        clock.paused_s += time.perf_counter() - paused_at


@dataclasses.dataclass(frozen=True)
class _Asks:
    """What the loop asks its caller: whether to stop, whether a checkpoint is due by time, and for
    the best checkpoint's weights."""

    stop: Callable[[], bool]
    checkpoint_due: Callable[[], bool]
    restore_best: Callable[[], int | None]


def _train(
    session: Session, plan: LoopPlan, clock: TrainingClock, state: LoopState, asks: _Asks
) -> Iterator[Record]:
    spec = session.spec
    stopping = spec.train.early_stopping
    stopper = EarlyStopper.from_config(stopping, state.stopper) if stopping else None
    stopped_early = None
    yield _run_started(session, plan)
    session.wrapped_model.train()
    set_optimizer_mode(session.optimizer, "train")
    clock.start(state.elapsed_s)
    while state.epoch <= spec.epochs and state.step < spec.total_steps:
        epoch = state.epoch
        lr = yield from _train_epoch(session, plan, clock, state, asks)
        complete = state.batches_done == len(session.batches)  # (micro-batches)
        metrics = {"train_loss": _mean_finite(state.epoch_losses)}
        tables = {}
        if session.val_batches is not None:
            evaluation = _evaluation(session, clock, "val", state.step, epoch)
            metrics.update({f"val_{name}": value for name, value in evaluation.metrics.items()})
            tables = evaluation.tables
        improved = state.note_bests(metrics, epoch, spec.direction)
        if not complete:
            # max_steps ended the run mid-epoch: a resume with more steps goes on from here (before the
            # epoch's row, which the finished epoch writes again), and these weights, just scored, are
            # best.pt when they are the best.
            state.elapsed_s = clock.elapsed()
            yield CheckpointDue("partial", epoch, state.step, state.to_dict(), improved)
        yield EpochRecord(epoch, state.step, lr, clock.elapsed(), metrics, improved, tables)
        if plan.epoch_scheduler is not None:
            # Schedule (per epoch). ReduceLROnPlateau decides from the monitored metric; others count epochs.
            monitor = spec.stepping.monitor if spec.stepping else None
            plan.epoch_scheduler.step(metrics[monitor]) if monitor else plan.epoch_scheduler.step()
        if stopper is not None and stopper.should_stop(metrics[stopper.monitor], epoch):
            stopped_early = stopper.reason(epoch)
        if not complete:
            break
        # The next epoch starts here: this is a point to resume from.
        state.epoch, state.batches_done, state.epoch_losses = epoch + 1, 0, []
        state.elapsed_s, state.stopper = clock.elapsed(), stopper.to_dict() if stopper else None
        final = stopped_early is not None or state.epoch > spec.epochs or state.step >= spec.total_steps
        yield CheckpointDue("final" if final else "epoch", epoch, state.step, state.to_dict(), improved)
        if stopped_early:
            break
    last_epoch = state.epoch - 1 if state.batches_done == 0 else state.epoch
    if session.test_batches is not None:
        # The test data judges the weights the run would keep: the best epoch's (train.test_on).
        weights_epoch = asks.restore_best() if spec.train.test_on == "best" else None
        # Restored best weights are the scored ones already: no optimizer mode applies to them again.
        test = _evaluation(session, clock, "test", state.step, last_epoch, weights_epoch is None)
        judged: Literal["best", "last"] = "best" if weights_epoch is not None else "last"
        yield dataclasses.replace(test, weights=judged, weights_epoch=weights_epoch or last_epoch)
    final_lrs = tuple(float(group["lr"]) for group in session.optimizer.param_groups)
    scaler_skips = state.scaler_skips if session.scaler is not None else None
    extra = {
        "compile_time_s": plan.compile.seconds,
        "recompilations": plan.compile.recompilations if plan.compile.compiled else None,
        "scaler_skipped_steps": scaler_skips,
    }
    yield RunFinished(state.step, last_epoch, clock.elapsed(), stopped_early, final_lrs, extra)


def _run_started(session: Session, plan: LoopPlan) -> RunStarted:
    spec = session.spec
    steps, trainable = spec.steps_per_epoch, plan.trainable
    return RunStarted(spec.epochs, steps, spec.total_steps, trainable, session.init_hash, session.data_hash)


def _train_epoch(
    session: Session,
    plan: LoopPlan,
    clock: TrainingClock,
    state: LoopState,
    asks: _Asks,
) -> Generator[Record, None, float]:
    """The rest of the current epoch, step by step; returns the learning rate its last step used."""
    spec, optimizer = session.spec, session.optimizer
    eval_every, log_every = spec.train.eval_every, spec.train.log_every
    last_step = min(spec.total_steps, state.step + plan.steps_left(len(session.batches) - state.batches_done))
    advice = divergence_advice(spec.clip is not None)
    host, lr = (
        HostCopies(plan.steps_per_sync, state.epoch_losses, advice),
        float(optimizer.param_groups[0]["lr"]),
    )
    rate_groups = [index for _, index in spec.rate_columns]  # the rates logged beside `lr`
    batches = session.batches.epoch(skip=state.batches_done, number=state.epoch)
    for group in micro_batch_groups(batches, plan.accumulate):  # one group per optimizer step
        state.step, state.batches_done = state.step + 1, state.batches_done + len(group)
        param_groups = optimizer.param_groups
        lr = float(param_groups[0]["lr"])  # the rate this step uses, before any schedule
        group_lrs = tuple(float(param_groups[index]["lr"]) for index in rate_groups)
        logged, first = state.step % log_every == 0, state.batches_done - len(group)
        # The step itself: zero_grad, forward and backward, clip, step (or skip), schedule (step.py).
        if plan.compile.due(group):
            with plan.compile.around(clock, group):
                result = take_step(plan.step, group, first, logged)
        else:
            result = take_step(plan.step, group, first, logged)
        done = PendingStep(
            state.step,
            state.epoch,
            result.loss,
            lr,
            result.grad_norm,
            clock.elapsed(),
            logged or result.outcome == "skipped",
            group_lrs=group_lrs,
        )
        if result.outcome == "skipped":  # on_nonfinite: skip
            yield from _skip(host, done, state, spec.train.max_skips)
            continue
        state.skips_in_a_row = 0
        state.scaler_skips += result.outcome == "scaler_skipped"
        copied = host.add(done)  # its values wait on the device until a copy is due
        if copied:
            yield from host.flush()
        # Evaluate every eval_every steps, except at the last step of the epoch or run: their end does.
        if eval_every and state.step % eval_every == 0 and state.step != last_step:
            yield from host.flush()
            yield _evaluation(session, clock, "val", state.step, state.epoch)
        # Ctrl-C or SIGTERM: this step is done; keep it, and stop. Several processes agree on it (an
        # all-reduce and a host copy) only where values were copied to the host anyway: every rank
        # copies at the same steps, so all stop at the same one, and no ordinary step waits.
        if copied or not session.world.active:
            if asks.stop():
                yield from _interrupt(host, clock, state)
            if state.step != last_step and asks.checkpoint_due():  # (the epoch's end checkpoints itself)
                yield from host.flush()
                state.elapsed_s = clock.elapsed()
                yield CheckpointDue("interval", state.epoch, state.step, state.to_dict())
        if state.step == last_step:
            break
    yield from host.flush()
    return lr


def _interrupt(host: HostCopies, clock: TrainingClock, state: LoopState) -> Iterator[Record]:
    """The rows so far, a point to resume from after this step, then Interrupted."""
    yield from host.flush()
    state.elapsed_s = clock.elapsed()
    yield CheckpointDue("interrupted", state.epoch, state.step, state.to_dict())
    raise Interrupted


def _skip(host: HostCopies, skipped: PendingStep, state: LoopState, max_skips: int) -> Iterator[Record]:
    """on_nonfinite: skip (the step dropped its gradients). The step's row follows the steps before it
    (rows stay in step order), then a warning; too many skips in a row stop the run."""
    skipped = skipped._replace(skipped=True)
    state.skips_in_a_row += 1
    host.add(skipped)
    yield from host.flush()
    yield SkippedStep(skipped.step, skipped.epoch, float(skipped.loss), state.skips_in_a_row)
    if state.skips_in_a_row >= max_skips:
        raise TooManySkips(skipped.step, skipped.epoch, state.skips_in_a_row, host.advice)


def _mean_finite(losses: list[float]) -> float:
    """The epoch's mean training loss, over its applied steps."""
    finite = [loss for loss in losses if math.isfinite(loss)]
    return math.fsum(finite) / len(finite) if finite else math.nan


def _evaluation(
    session: Session, clock: TrainingClock, split: str, step: int, epoch: int, switch_modes: bool = True
) -> EvalRecord:
    """Evaluate on a split; an optimizer with an eval mode (schedule-free) puts its eval weights in the
    model for it, as a hand-written loop calls optimizer.eval() and optimizer.train() around it."""
    batches = session.val_batches if split == "val" else session.test_batches
    assert batches is not None
    with clock.paused():  # evaluation is not training time
        if switch_modes:
            set_optimizer_mode(session.optimizer, "eval")
        measured = evaluate_split(session, batches)
        if switch_modes:
            set_optimizer_mode(session.optimizer, "train")
    return EvalRecord(split, step, epoch, measured.values, clock.elapsed(), tables=measured.tables)
