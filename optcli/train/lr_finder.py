"""The learning-rate range test (Smith 2015): train a few mini-batches with the rate growing
exponentially, record the loss, and suggest a rate from the smoothed curve.

The user's model is never trained by this: the run is built afresh in memory, from the config's
seed, and every random generator is put back as it was afterwards, so nothing leaks into a later run.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import random
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy
import torch

from optcli.components.optimizers import needs_closure, set_optimizer_mode
from optcli.config.spec import RunSpec
from optcli.errors import ConfigError
from optcli.plotting import load_pyplot
from optcli.train.rundir import write_atomically
from optcli.train.session import Session, build_session
from optcli.train.step import clip_gradients

# The moving average spans about 5% of the test: fastai's fixed 0.98 (50 steps) lags by four decades of
# rate on a 100-step test over eight, and places its minimum after the loss has already turned up.
SMOOTHED_SHARE = 0.05
DIVERGED = 4.0  # stop once the smoothed loss exceeds this multiple of its minimum


@dataclass(frozen=True)
class RangeTestStep:
    step: int
    lr: float
    loss: float
    smoothed_loss: float


@dataclass(frozen=True)
class Suggestion:
    lr: float | None
    steepest: float | None  # the rate of the steepest descent of the smoothed loss, before its minimum
    minimum_tenth: float | None  # a tenth of the rate where the smoothed loss is lowest
    why: str


def range_test(spec: RunSpec, start_lr: float, end_lr: float, steps: int) -> tuple[list[RangeTestStep], str]:
    """The test's steps, and why it stopped."""
    if not 0 < start_lr < end_lr:
        raise ConfigError(f"--start-lr {start_lr:g} must be above 0 and below --end-lr {end_lr:g}")
    if steps < 10:
        raise ConfigError(f"--steps: at least 10 steps make a curve, got {steps}")
    with preserved_random_state():
        session = build_session(spec)
        if needs_closure(session.optimizer):
            raise ConfigError(
                f"optimizer: {spec.optimizer.name} evaluates the loss inside its step; the range test "
                "needs one step per batch"
            )
        return _run(session, start_lr, end_lr, steps)


def _run(session: Session, start_lr: float, end_lr: float, steps: int) -> tuple[list[RangeTestStep], str]:
    model, optimizer, loss_function = session.wrapped_model, session.optimizer, session.loss_function
    parameters = [parameter for parameter in session.model.parameters() if parameter.requires_grad]
    growth = (end_lr / start_lr) ** (1 / (steps - 1))
    smoothing = min(0.98, max(0.5, 1 - 1 / (SMOOTHED_SHARE * steps)))  # the past's weight in the average
    recorded: list[RangeTestStep] = []
    average, best = 0.0, math.inf
    ratios = part_ratios(session.spec) or [1.0] * len(optimizer.param_groups)
    model.train()
    set_optimizer_mode(optimizer, "train")  # schedule-free optimizers train only in train mode
    for index, batch in enumerate(_batches(session), start=0):
        if index == steps:
            return recorded, f"reached --end-lr {end_lr:g}"
        lr = start_lr * growth**index
        for group, ratio in zip(optimizer.param_groups, ratios, strict=True):
            group["lr"] = lr * ratio
        optimizer.zero_grad(set_to_none=True)
        loss = session.spec.forward(model, loss_function, batch)[0]
        loss.backward()
        clip_gradients(parameters, session.spec.clip, want_norm=False)
        optimizer.step()
        value = loss.item()  # a sync per step: this is a short test, not training
        if not math.isfinite(value):
            return recorded, f"the loss became {value} at lr {lr:.2e}"
        average = smoothing * average + (1 - smoothing) * value
        smoothed = average / (1 - smoothing ** (index + 1))  # bias correction: the average starts at 0
        recorded.append(RangeTestStep(index + 1, lr, value, smoothed))
        best = min(best, smoothed)
        if smoothed > DIVERGED * best:
            return recorded, f"the smoothed loss passed {DIVERGED:g}× its minimum at lr {lr:.2e}"
    return recorded, "the data ran out"


def part_ratios(spec: RunSpec) -> list[float]:
    """With optimizer.parts, every group's configured rate over the first part's: the range test moves
    all of them by one factor, keeping their ratios (Muon's 0.02 to AdamW's 3e-3). Empty without parts."""
    rates = spec.findings.start_lrs
    return [rate / rates[0] for rate in rates] if spec.parts and rates and rates[0] else []


def suggested_settings(spec: RunSpec, lr: float) -> dict[str, float]:
    """The keys to set for a suggested rate: optimizer.lr; with parts, each part's lr, scaled by the
    one factor that takes the first part's rate to `lr`."""
    if not spec.parts:
        return {"optimizer.lr": lr}
    factor, settings, index = lr / spec.findings.start_lrs[0], {}, 0
    for part in spec.parts:
        settings[f"optimizer.parts.{part.name}.lr"] = spec.findings.start_lrs[index] * factor
        index += 1 + len(part.param_groups)
    return settings


def _batches(session: Session) -> Iterator[Any]:
    for number in itertools.count(1):  # as many epochs as the test needs
        yield from session.batches.epoch(number=number)


def suggest(steps: list[RangeTestStep]) -> Suggestion:
    """The steepest descent of the smoothed loss (against log lr) before its minimum, cross-checked
    against a tenth of the rate at the minimum: the steepest point is taken when the two agree within
    10×; otherwise it is likely noise of the curve's flat start, and minimum / 10 is taken."""
    if len(steps) < 3:
        return Suggestion(
            None, None, None, "too few finite losses to suggest a rate: widen the range or add steps"
        )
    lowest = min(range(len(steps)), key=lambda index: steps[index].smoothed_loss)
    minimum_tenth = steps[lowest].lr / 10
    stable = steps[: lowest + 1]
    if len(stable) < 3:
        return Suggestion(
            minimum_tenth, None, minimum_tenth, "the loss was lowest at the start: minimum / 10"
        )
    logs = numpy.log10([step.lr for step in stable])
    slopes = numpy.gradient(numpy.array([step.smoothed_loss for step in stable]), logs)
    steepest = stable[int(numpy.argmin(slopes))].lr
    if minimum_tenth / 10 <= steepest <= minimum_tenth * 10:
        return Suggestion(
            steepest,
            steepest,
            minimum_tenth,
            "the steepest descent, which agrees with minimum / 10 within 10×",
        )
    return Suggestion(
        minimum_tenth,
        steepest,
        minimum_tenth,
        "minimum / 10: the steepest descent lies more than 10× away from it, likely noise in the curve's flat start",
    )


@contextlib.contextmanager
def preserved_random_state() -> Iterator[None]:
    """Every generator (Python, NumPy, torch, CUDA) put back as it was, whatever happens inside."""
    python, numpy_state, cpu = random.getstate(), numpy.random.get_state(), torch.get_rng_state()
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None
    try:
        yield
    finally:
        random.setstate(python)
        numpy.random.set_state(numpy_state)
        torch.set_rng_state(cpu)
        if cuda is not None:
            torch.cuda.set_rng_state_all(cuda)


def write_range_test(directory: Path, steps: list[RangeTestStep], suggestion: Suggestion, title: str) -> None:
    """lr_find.csv (step, lr, loss, smoothed_loss) and lr_find.png (the loss against the rate, on a log
    axis, with the suggestion marked)."""
    rows = "".join(f"{row.step},{row.lr!r},{row.loss!r},{row.smoothed_loss!r}\n" for row in steps)
    write_atomically(directory / "lr_find.csv", "step,lr,loss,smoothed_loss\n" + rows)
    pyplot = load_pyplot()
    figure, axis = pyplot.subplots(figsize=(8, 4.5))
    axis.plot([row.lr for row in steps], [row.loss for row in steps], color="0.75", linewidth=1, label="loss")
    smoothed = [row.smoothed_loss for row in steps]
    axis.plot([row.lr for row in steps], smoothed, color="C0", linewidth=1.8, label="smoothed loss")
    if suggestion.lr is not None:
        axis.axvline(suggestion.lr, color="C3", linestyle="--", label=f"suggested lr {suggestion.lr:.2e}")
    axis.set_xscale("log")
    if smoothed:
        axis.set_ylim(min(smoothed) * 0.9, min(max(smoothed), DIVERGED * min(smoothed)) * 1.1)
    axis.set_xlabel("learning rate (log scale)")
    axis.set_ylabel("training loss")
    axis.set_title(f"{title}: learning-rate range test", fontsize=10)
    axis.grid(True, which="both", alpha=0.3)
    axis.legend(fontsize=9)
    figure.tight_layout()
    figure.savefig(directory / "lr_find.png", dpi=110)
    pyplot.close(figure)
