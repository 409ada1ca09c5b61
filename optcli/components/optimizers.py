"""The optimizer registry: every optimizer in torch.optim, plus the guide's `momentum`."""

from __future__ import annotations

import functools
import importlib
import importlib.util
import inspect

import torch

from optcli.components.registry import Registry
from optcli.name_matching import normalize_name

# Packages of optimizers users install (pip name, import name), and what a few of them provide, for
# the hint on an unknown name when the package is not installed.
THIRD_PARTY = {
    "pytorch-optimizer": "pytorch_optimizer",
    "lion-pytorch": "lion_pytorch",
    "schedulefree": "schedulefree",
}
WELL_KNOWN = {
    "lion": ["lion_pytorch:Lion", "pytorch_optimizer:Lion"],
    "adan": ["pytorch_optimizer:Adan"],
    "lamb": ["pytorch_optimizer:Lamb"],
    "lookahead": ["pytorch_optimizer:Lookahead"],
    "adamwschedulefree": ["schedulefree:AdamWScheduleFree"],
    "sgdschedulefree": ["schedulefree:SGDScheduleFree"],
    "prodigy": ["pytorch_optimizer:Prodigy"],
    "sophia": ["pytorch_optimizer:SophiaH"],
    "shampoo": ["pytorch_optimizer:Shampoo"],
    "muon": ["pytorch_optimizer:Muon"],
}


def found_elsewhere(name: str) -> list[str]:
    """Import paths that provide an optimizer of this name: in the installed packages of THIRD_PARTY
    (their optimizer classes, by normalized name), else from WELL_KNOWN with the package to install."""
    wanted = normalize_name(name)
    found = []
    for module_name in THIRD_PARTY.values():
        if importlib.util.find_spec(module_name) is None:
            continue
        try:
            module = importlib.import_module(module_name)
        except Exception:
            continue
        found += [
            f"{module_name}:{attribute}"
            for attribute, value in vars(module).items()
            if normalize_name(attribute) == wanted
            and inspect.isclass(value)
            and issubclass(value, torch.optim.Optimizer)
        ]
    if found:
        return found
    pip_name = {module: pip for pip, module in THIRD_PARTY.items()}
    return [f"{path} (pip install {pip_name[path.partition(':')[0]]})" for path in WELL_KNOWN.get(wanted, [])]


# optcli passes the model's parameters itself.
OPTIMIZERS = Registry(
    "optimizer",
    supplied_by_code=frozenset({"params"}),
    requirement=(
        lambda target: (
            inspect.isclass(target)
            and issubclass(target, torch.optim.Optimizer)
            and target is not torch.optim.Optimizer
        ),
        "a torch.optim.Optimizer subclass",
    ),
    found_elsewhere=found_elsewhere,
)

_UNAVAILABLE = {
    # optcli's models have dense gradients; a model of your own with nn.Embedding(sparse=True) can
    # still name the class by its import path.
    "SparseAdam": "it needs sparse gradients; for a model that has them, write name: torch.optim:SparseAdam",
}

# Everything torch.optim exports that is an optimizer, so a new torch release adds its optimizers here.
for _name in torch.optim.__all__:
    _candidate = getattr(torch.optim, _name)
    is_optimizer = inspect.isclass(_candidate) and issubclass(_candidate, torch.optim.Optimizer)
    if is_optimizer and _candidate is not torch.optim.Optimizer:
        OPTIMIZERS.add(_name, _candidate, unavailable=_UNAVAILABLE.get(_name))

# The guide's "Momentum": SGD where the previous step's gradient contributes 90%.
OPTIMIZERS.add(
    "momentum",
    torch.optim.SGD,
    presets={"momentum": 0.9},
    summary="SGD with momentum 0.9 unless the config sets momentum",
)


def needs_closure(optimizer: torch.optim.Optimizer) -> bool:
    """LBFGS (and any optimizer whose `step` requires a closure) re-evaluates the loss itself."""
    return class_needs_closure(type(optimizer))


def class_needs_closure(optimizer_class: object) -> bool:
    step = getattr(optimizer_class, "step", None)
    if step is None:
        return False
    closure = inspect.signature(step).parameters.get("closure")
    return closure is not None and closure.default is inspect.Parameter.empty


def wraps_an_optimizer(optimizer_class: object) -> bool:
    """A wrapper such as Lookahead takes a built optimizer as its first argument, `optimizer`, where
    other optimizers take the parameters."""
    try:
        parameters = list(inspect.signature(optimizer_class).parameters)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return False
    return bool(parameters) and parameters[0] == "optimizer"


def every_group_keys(optimizer_class: object) -> dict[str, object]:
    """Keys an optimizer requires in every parameter group: pytorch-optimizer's Muon family refuses a
    group without `use_muon` (true: Muon's update; false: its built-in AdamW). optcli gives each group
    `use_muon: true` unless the config's group sets it (a part of matrices is Muon's whole business)."""
    return dict(_every_group_keys(optimizer_class))  # a copy: the cached answer stays as it is


@functools.cache  # reading a class's source costs milliseconds, and each optimizer built asks
def _every_group_keys(optimizer_class: object) -> tuple[tuple[str, object], ...]:
    for cls in getattr(optimizer_class, "__mro__", ()):  # (DistributedMuon and MuonClip inherit Muon's check)
        try:
            source = inspect.getsource(cls.__init__)
        except (OSError, TypeError):
            continue
        if "'use_muon' not in group" in source:
            return (("use_muon", True),)
    return ()


# Optimizers that take matrices only, by class: the shapes they take, in words, and the test.
_MATRIX_ONLY = {
    "torch.optim.Muon": ("2-D", lambda ndim: ndim == 2),
    "pytorch_optimizer.optimizer.muon.adamuon.AdaMuon": ("at least 2-D", lambda ndim: ndim >= 2),
    "pytorch_optimizer.optimizer.sso.SpectralSphere": ("2-D", lambda ndim: ndim == 2),
}


def shapes_refused(optimizer_class: object, named: list[tuple[str, torch.Tensor]]) -> tuple[str, list[str]]:
    """For an optimizer of matrices only (Muon): the shapes it takes, in words, and the parameters of
    other shapes ('0.bias (1-D)'); else ('', [])."""
    cls = optimizer_class if inspect.isclass(optimizer_class) else type(optimizer_class)
    for base in cls.__mro__:
        rule = _MATRIX_ONLY.get(f"{base.__module__}.{base.__qualname__}")
        if rule is not None:
            words, takes = rule
            return words, [
                f"{name} ({parameter.ndim}-D)" for name, parameter in named if not takes(parameter.ndim)
            ]
    return "", []


def has_modes(optimizer: torch.optim.Optimizer) -> bool:
    """Schedule-free optimizers keep two sets of weights: `optimizer.eval()` puts the ones to judge in
    the model, `optimizer.train()` the ones to train. Other optimizers have no such methods."""
    return callable(getattr(optimizer, "eval", None)) and callable(getattr(optimizer, "train", None))


def set_optimizer_mode(optimizer: torch.optim.Optimizer, mode: str) -> None:
    if has_modes(optimizer):
        getattr(optimizer, mode)()
