"""The scheduler registry and what optcli knows about particular schedulers."""

from __future__ import annotations

import inspect

from torch.optim import lr_scheduler

from optcli.components.registry import Registry

# optcli passes the optimizer itself.
SCHEDULERS = Registry(
    "scheduler",
    optional_suffix="lr",
    supplied_by_code=frozenset({"optimizer"}),
    requirement=(
        lambda target: (
            inspect.isclass(target)
            and issubclass(target, lr_scheduler.LRScheduler | lr_scheduler.ReduceLROnPlateau)
        ),
        "a learning-rate scheduler (an LRScheduler or ReduceLROnPlateau subclass)",
    ),
)

_NEEDS_A_FUNCTION = "it needs a Python function (lr_lambda), which YAML cannot hold"

# Everything torch.optim.lr_scheduler exports that is a scheduler.
for _name in lr_scheduler.__all__:
    _candidate = getattr(lr_scheduler, _name)
    if not inspect.isclass(_candidate) or _candidate is lr_scheduler.LRScheduler:
        continue
    if issubclass(_candidate, lr_scheduler.LRScheduler | lr_scheduler.ReduceLROnPlateau):
        SCHEDULERS.add(
            _name,
            _candidate,
            aliases={
                "ReduceLROnPlateau": ("plateau", "reduce_on_plateau"),
                "CosineAnnealingLR": ("cosine",),
            }.get(_name, ()),
            unavailable=_NEEDS_A_FUNCTION if _name in ("LambdaLR", "MultiplicativeLR") else None,
        )

# Schedulers built from a list of inner schedulers (`schedulers:` in YAML holds their mappings).
COMPOSITE = (lr_scheduler.SequentialLR, lr_scheduler.ChainedScheduler)

# Schedulers meant to be stepped after every optimizer step rather than every epoch.
STEPPED_PER_BATCH = (lr_scheduler.OneCycleLR, lr_scheduler.CyclicLR)

# The argument that is the run's length, in scheduler steps: filled in when the config leaves it out.
RUN_LENGTH_ARGUMENT: dict[type, str] = {
    lr_scheduler.OneCycleLR: "total_steps",
    lr_scheduler.CosineAnnealingLR: "T_max",
    lr_scheduler.PolynomialLR: "total_iters",
}
