"""A tuned comparison's search spaces, and the trial points drawn from them.

`{log_uniform: [a, b]}`, `{uniform: [a, b]}`, `{int_uniform: [a, b]}` and `{values: [...]}` for the
quasi-random search; `{log_grid: [a, b, n]}` and `{values: [...]}` for a grid. Quasi-random points come
from a scrambled Sobol sequence (`torch.quasirandom.SobolEngine`) seeded from the space itself, so every
arm that searches the same space is tuned at the same points.
"""

from __future__ import annotations

import hashlib
import itertools
import math
from dataclasses import dataclass
from typing import Any, Literal

from optcli.errors import ConfigError

Kind = Literal["log_uniform", "uniform", "int_uniform", "values", "log_grid"]
KINDS: tuple[Kind, ...] = ("log_uniform", "uniform", "int_uniform", "values", "log_grid")
CONTINUOUS = ("log_uniform", "uniform", "int_uniform")
GRID = ("log_grid", "values")


@dataclass(frozen=True)
class Dimension:
    key: str  # a dotted config key, as --set takes it
    kind: Kind
    low: float = 0.0
    high: float = 0.0
    choices: tuple[Any, ...] = ()  # values, or log_grid's points

    @property
    def logarithmic(self) -> bool:
        return self.kind in ("log_uniform", "log_grid")

    def at(self, fraction: float) -> Any:
        """The value at `fraction` of the way through the space (quasi-random search)."""
        if self.kind == "log_uniform":
            return math.exp(math.log(self.low) + fraction * (math.log(self.high) - math.log(self.low)))
        if self.kind == "uniform":
            return self.low + fraction * (self.high - self.low)
        if self.kind == "int_uniform":
            return min(int(self.high), int(self.low) + int(fraction * (self.high - self.low + 1)))
        return self.choices[min(len(self.choices) - 1, int(fraction * len(self.choices)))]

    def on_edge(self, value: Any) -> bool:
        """Whether a selected value lies at the space's edge (within 5% of its width, on a log scale for
        a log space; the first or last of its values): the best may lie outside it."""
        if self.kind in GRID or self.kind == "values":
            return len(self.choices) > 2 and value in (self.choices[0], self.choices[-1])
        scale = math.log if self.logarithmic else (lambda number: number)
        low, high, at = scale(self.low), scale(self.high), scale(float(value))
        return min(at - low, high - at) <= 0.05 * (high - low)

    def describe(self) -> str:
        if self.choices:
            return f"{self.key} in {list(self.choices)}"
        return f"{self.key} {self.kind.replace('_', '-')} in [{self.low:g}, {self.high:g}]"


def parse_space(mapping: dict[str, Any], where: str) -> tuple[dict[str, Dimension], list[str]]:
    """A `tune:` mapping's dimensions, and the problems found (each naming its key)."""
    dimensions, problems = {}, []
    for key, value in mapping.items():
        try:
            dimensions[key] = _dimension(key, value)
        except ValueError as error:
            problems.append(f"{where}.{key}: {error}")
    return dimensions, problems


def _dimension(key: str, value: Any) -> Dimension:
    if not isinstance(value, dict) or len(value) != 1 or next(iter(value)) not in KINDS:
        raise ValueError(f"give one of {', '.join(f'{{{kind}: ...}}' for kind in KINDS)}, got {value!r}")
    kind, bounds = next(iter(value.items()))
    if kind == "values":
        if not isinstance(bounds, list) or not bounds:
            raise ValueError("values: give a non-empty list")
        return Dimension(key, kind, choices=tuple(bounds))
    numbers = bounds if isinstance(bounds, list) else []
    if kind == "log_grid":
        if len(numbers) != 3 or not isinstance(numbers[2], int) or numbers[2] < 2:
            raise ValueError("log_grid: give [low, high, count], count at least 2")
        (low, high), count = _bounds(kind, numbers[:2]), numbers[2]
        points = tuple(
            math.exp(math.log(low) + i * (math.log(high) - math.log(low)) / (count - 1)) for i in range(count)
        )
        return Dimension(key, kind, low, high, points)
    low, high = _bounds(kind, numbers)
    return Dimension(key, kind, low, high)


def _bounds(kind: str, numbers: list[Any]) -> tuple[float, float]:
    if len(numbers) != 2 or not all(isinstance(n, int | float) and not isinstance(n, bool) for n in numbers):
        raise ValueError(f"{kind}: give [low, high], two numbers")
    low, high = float(numbers[0]), float(numbers[1])
    if not low < high:
        raise ValueError(f"{kind}: low ({low:g}) must be below high ({high:g})")
    if kind in ("log_uniform", "log_grid") and low <= 0:
        raise ValueError(f"{kind}: a log scale needs low above 0, got {low:g}")
    if kind == "int_uniform" and not (low.is_integer() and high.is_integer()):
        raise ValueError("int_uniform: give whole numbers")
    return low, high


def trial_points(
    dimensions: dict[str, Dimension], budget: int, search: Literal["quasirandom", "grid"]
) -> list[dict[str, Any]]:
    """The `budget` settings to try: a grid's every combination (which must number `budget`), or the
    first `budget` points of a scrambled Sobol sequence seeded from the space's description."""
    keys = sorted(dimensions)
    if search == "grid":
        wrong = [key for key in keys if dimensions[key].kind not in GRID]
        if wrong:
            raise ConfigError(f"tune: a grid takes log_grid or values dimensions; {', '.join(wrong)} are not")
        combinations = list(itertools.product(*(dimensions[key].choices for key in keys)))
        if len(combinations) != budget:
            raise ConfigError(f"budget: the grid has {len(combinations)} points, not the budget's {budget}")
        return [dict(zip(keys, combination, strict=True)) for combination in combinations]
    wrong = [key for key in keys if dimensions[key].kind == "log_grid"]
    if wrong:
        raise ConfigError(f"tune: log_grid belongs to search: grid; use log_uniform for {', '.join(wrong)}")
    from torch.quasirandom import SobolEngine

    description = ";".join(dimensions[key].describe() for key in keys)
    seed = int.from_bytes(hashlib.sha256(description.encode()).digest()[:4], "little")
    fractions = SobolEngine(len(keys), scramble=True, seed=seed).draw(budget, dtype=_float64()).tolist()
    return [
        {key: dimensions[key].at(fraction) for key, fraction in zip(keys, point, strict=True)}
        for point in fractions
    ]


def _float64() -> Any:
    import torch

    return torch.float64
