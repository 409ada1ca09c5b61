"""The parts of one optimizer (`optimizer.parts`): which parameters each part takes, by kind or by name
glob, and the optimizer the loop is given, built over the model's parameters (one class, or the parts
combined: components/parted.py).

The kinds, each parameter exactly one of them:
- `head`: the parameters of the module that produces the model's output (the last Linear, Conv or
  Embedding module to be registered; a head tied to the embedding is the embedding's parameter);
- `embeddings`: those of nn.Embedding and nn.EmbeddingBag modules;
- `norms`: those of normalization layers (LayerNorm, RMSNorm, BatchNorm, GroupNorm, InstanceNorm);
- `biases`: 1-D biases of the other modules;
- `matrices`: weights of at least 2 dimensions of the other Linear and Conv modules (Muon's);
- `rest`: every parameter that no other part's selectors take.
"""

from __future__ import annotations

import fnmatch
from typing import Any

import torch

from optcli.components.optimizers import every_group_keys
from optcli.components.parted import PartedOptimizer, PartSchedulers
from optcli.config.init_and_groups import ParamGroup, optimizer_parameters
from optcli.config.schema import PARAMETER_KINDS
from optcli.config.spec import Component, OptimizerPart, RunSpec

_NORMS = (
    torch.nn.LayerNorm,
    torch.nn.GroupNorm,
    torch.nn.LocalResponseNorm,
    torch.nn.modules.batchnorm._NormBase,
    *((torch.nn.RMSNorm,) if hasattr(torch.nn, "RMSNorm") else ()),
)
_EMBEDDINGS = (torch.nn.Embedding, torch.nn.EmbeddingBag)
_LAYERS = (torch.nn.Linear, torch.nn.modules.conv._ConvNd)
_HEADS = (*_LAYERS, *_EMBEDDINGS)

# The class a config with optimizer.parts trains with: built by `build_optimizer`, never by its own
# Component.build (it takes the parts, not the parameters).
PARTS = Component("parts", PartedOptimizer, {}, frozenset({"parts"}))


def parameter_kinds(model: torch.nn.Module) -> dict[str, str]:
    """Each parameter's kind, by its name in `model.named_parameters()`."""
    modules = [
        (name, module)
        for name, module in model.named_modules()
        if next(module.parameters(False), None) is not None
    ]
    heads = [name for name, module in modules if isinstance(module, _HEADS)]
    head = heads[-1] if heads else None
    kinds: dict[str, str] = {}
    for module_name, module in modules:
        for local, parameter in module.named_parameters(recurse=False):
            name = f"{module_name}.{local}" if module_name else local
            if module_name == head:
                kind = "head"
            elif isinstance(module, _EMBEDDINGS):
                kind = "embeddings"
            elif isinstance(module, _NORMS):
                kind = "norms"
            elif local == "bias" and parameter.ndim == 1:
                kind = "biases"
            elif isinstance(module, _LAYERS) and local == "weight" and parameter.ndim >= 2:
                kind = "matrices"
            else:
                kind = "rest"
            kinds.setdefault(name, kind)  # a shared (tied) parameter is its first module's
    # named_parameters() names a shared parameter once, by its first name: keep those names only.
    return {name: kinds[name] for name, _ in model.named_parameters() if name in kinds}


def assign_parts(
    model: torch.nn.Module, parts: tuple[OptimizerPart, ...]
) -> tuple[dict[str, str], list[str]]:
    """Each parameter's part (by parameter name), and the problems: a selector that takes nothing, a
    parameter two parts take, one no part takes."""
    kinds = parameter_kinds(model)
    names = list(kinds)
    problems: list[str] = []
    claims: dict[str, list[str]] = {name: [] for name in names}
    rest_parts = [part.name for part in parts if "rest" in part.selectors]
    if len(rest_parts) > 1:
        problems.append(
            f"optimizer.parts: only one part can take the rest; {' and '.join(rest_parts)} both do"
        )
    for part in parts:
        for selector in part.selectors:
            if selector == "rest":
                continue
            taken = [
                n
                for n in names
                if (kinds[n] == selector if selector in PARAMETER_KINDS else fnmatch.fnmatchcase(n, selector))
            ]
            if not taken:
                problems.append(
                    f"optimizer.parts.{part.name}.params: '{selector}' takes no parameter of the model ({_shown(names, kinds)})"
                )
            for name in taken:
                if part.name not in claims[name]:
                    claims[name].append(part.name)
    twice = {name: owners for name, owners in claims.items() if len(owners) > 1}
    if twice:
        listed = "; ".join(f"{name} by {' and '.join(owners)}" for name, owners in list(twice.items())[:8])
        problems.append(
            f"optimizer.parts: a parameter belongs to one part only, and these are taken twice: {listed}"
        )
    unclaimed = [name for name, owners in claims.items() if not owners]
    if unclaimed and not rest_parts:
        listed = ", ".join(f"{name} ({kinds[name]})" for name in unclaimed[:12])
        more = f" and {len(unclaimed) - 12} more" if len(unclaimed) > 12 else ""
        problems.append(
            f"optimizer.parts: no part takes {listed}{more}; add them to a part's params, or give one part "
            "params: rest"
        )
    assignment = {
        name: owners[0] if owners else (rest_parts[0] if rest_parts else "")
        for name, owners in claims.items()
    }
    return assignment, problems


def _shown(names: list[str], kinds: dict[str, str]) -> str:
    shown = ", ".join(f"{name} ({kinds[name]})" for name in names[:12])
    return shown + (", ..." if len(names) > 12 else "")


def part_parameters(
    named: list[tuple[str, Any]], assignment: dict[str, str], part: OptimizerPart
) -> list[tuple[str, Any]]:
    return [(name, parameter) for name, parameter in named if assignment.get(name) == part.name]


def build_on(optimizer: Component, named: list[tuple[str, Any]], groups: tuple[ParamGroup, ...]) -> Any:
    """One optimizer class over these parameters, in its groups (with the keys its class requires in
    every group)."""
    required = every_group_keys((optimizer.inner or optimizer).target)
    return optimizer.build(optimizer_parameters(named, groups, required))


def build_optimizer(
    optimizer: Component,
    groups: tuple[ParamGroup, ...],
    parts: tuple[OptimizerPart, ...],
    model: torch.nn.Module,
) -> torch.optim.Optimizer:
    """The optimizer the loop is given: one class over the model's parameters in its groups, or the
    parts combined, each over its own."""
    named = list(model.named_parameters())
    if not parts:
        return build_on(optimizer, named, groups)  # type: ignore[no-any-return]
    assignment, _ = assign_parts(model, parts)
    return PartedOptimizer(
        {
            part.name: build_on(part.optimizer, part_parameters(named, assignment, part), part.param_groups)
            for part in parts
        }
    )


def build_part_schedulers(parts: tuple[OptimizerPart, ...], optimizer: Any) -> Any | None:
    """The parts' own schedulers, stepped as one; None when no part has one."""
    scheduled = {part.name: part.scheduler for part in parts if part.scheduler is not None}
    if not scheduled:
        return None
    return PartSchedulers(
        {name: scheduler.build(optimizer.parts[name]) for name, scheduler in scheduled.items()}
    )


def run_optimizer(spec: RunSpec, model: torch.nn.Module) -> Any:
    """A run's optimizer over the model's parameters (its groups, or its parts combined)."""
    return build_optimizer(spec.optimizer, spec.param_groups, spec.parts, model)


def run_scheduler(spec: RunSpec, optimizer: Any) -> Any | None:
    """A run's scheduler on the optimizer, or the parts' own stepped together, or None."""
    if spec.scheduler is not None:
        return spec.scheduler.build(optimizer)
    return build_part_schedulers(spec.parts, optimizer)
