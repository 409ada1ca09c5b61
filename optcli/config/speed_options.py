"""The train keys that scale a run up: mixed precision, gradient accumulation and torch.compile,
checked against the device and the optimizer before anything is built."""

from __future__ import annotations

from typing import Any

from optcli.components import optimizers
from optcli.components.signature import bind_arguments
from optcli.config.schema import TrainConfig
from optcli.config.sections import Problems
from optcli.config.spec import Component


def check_scaling(
    train: TrainConfig, device: str | None, optimizer: Component | None, problems: Problems
) -> None:
    closure = optimizer is not None and optimizers.class_needs_closure(optimizer.target)
    if train.precision == "fp16" and device is not None and not device.startswith("cuda"):
        problems.add(
            f"train.precision: fp16 needs a CUDA device (this run's is {device}); on the CPU, use bf16"
        )
    if train.precision == "fp16" and closure:
        assert optimizer is not None
        problems.add(
            f"train.precision: fp16's gradient scaler cannot step {optimizer.name}, which evaluates the loss "
            "inside its own step (a closure); use bf16 or 32"
        )
    if train.precision == "bf16" and device is not None and device.startswith("cuda"):
        import torch

        if not torch.cuda.is_bf16_supported():
            problems.add("train.precision: this GPU has no bf16; use fp16")
    if train.accumulate > 1 and closure:
        assert optimizer is not None
        problems.add(
            f"train.accumulate: {optimizer.name} evaluates the loss inside its own step (a closure), so its "
            "gradients cannot be accumulated over micro-batches; use 1"
        )
    if train.compile is not False:
        _check_compile(train.compile, problems)


def _check_compile(options: bool | dict[str, Any], problems: Problems) -> None:
    """torch.compile's arguments bound to its signature, then given to it on a stand-in module: it
    checks mode, backend and options when called, and compiles nothing until a first forward."""
    import torch

    found_before = len(problems.lines)
    arguments = compile_arguments(options, problems) if isinstance(options, dict) else {}
    if len(problems.lines) > found_before:
        return
    try:
        torch.compile(torch.nn.Identity(), **arguments)
    except Exception as error:
        problems.add(
            f"train.compile: torch.compile rejected its arguments: {str(error).splitlines()[0][:300]}"
        )


def compile_arguments(options: dict[str, Any], problems: Problems | None = None) -> dict[str, Any]:
    """train.compile's mapping bound to torch.compile's own signature (the model is optcli's)."""
    import torch

    bound, found = bind_arguments(
        torch.compile,
        dict(options),
        where="train.compile",
        display_name="torch.compile",
        supplied_by_code=frozenset({"model"}),
    )
    if problems is not None:
        problems.lines += found
    return bound
