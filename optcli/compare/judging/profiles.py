"""Performance profiles across workloads (Dolan and Moré, 2002), as MLCommons AlgoPerf scores training
algorithms: pure functions over times to target.

- An arm's time on a workload: the median over seeds of its steps (or seconds) to the workload's
  target, a seed that never reached it counting as infinite (so more than half missing: infinite).
- Its ratio: that time over the fastest arm's on the workload (infinite when it never got there, or
  when no arm did).
- Its profile: ρ(τ), the fraction of workloads whose ratio is at most τ, for τ ≥ 1.
- Its score: the area under ρ from 1 to τ_max, over τ_max - 1, in [0, 1] (AlgoPerf's definition,
  τ_max = 4): 1 for an arm fastest everywhere, 0 for one never within τ_max of the fastest. ρ is a
  step function, so the area is exact: each workload adds (τ_max - ratio) / (τ_max - 1), divided
  by the number of workloads, when its ratio is at most τ_max.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence

INFINITE = math.inf


def median_time(times: Sequence[float | None]) -> float:
    """The median over seeds, a seed without a time (never reached the target) infinite."""
    values = [INFINITE if time is None else float(time) for time in times]
    return statistics.median(values) if values else INFINITE  # (a middle pair with inf: inf)


def ratios(times: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
    """Per workload, each arm's time over the fastest arm's (infinite where it never got there)."""
    found = {}
    for workload, by_arm in times.items():
        fastest = min(by_arm.values(), default=INFINITE)
        found[workload] = {arm: _ratio(time, fastest) for arm, time in by_arm.items()}
    return found


def _ratio(time: float, fastest: float) -> float:
    if math.isinf(time) or math.isinf(fastest):
        return INFINITE
    if fastest == 0:  # (a target met before any training time: only another zero ties it)
        return 1.0 if time == 0 else INFINITE
    return time / fastest


def rho(arm_ratios: Sequence[float], tau: float) -> float:
    """The fraction of workloads on which the arm is within τ of the fastest."""
    if not arm_ratios:
        return 0.0
    return sum(ratio <= tau for ratio in arm_ratios) / len(arm_ratios)


def score(arm_ratios: Sequence[float], tau_max: float) -> float:
    """The area under ρ from 1 to τ_max, over τ_max - 1."""
    if not arm_ratios:
        return 0.0
    area = sum(tau_max - max(1.0, ratio) for ratio in arm_ratios if ratio <= tau_max)
    return area / (len(arm_ratios) * (tau_max - 1))


def profile_points(all_ratios: dict[str, dict[str, float]], tau_max: float) -> list[float]:
    """The τ where some arm's ρ changes, with 1 and τ_max: ρ is constant between them."""
    inside = {ratio for by_arm in all_ratios.values() for ratio in by_arm.values() if 1.0 <= ratio <= tau_max}
    return sorted(inside | {1.0, tau_max})


def by_arm(all_ratios: dict[str, dict[str, float]], arms: Sequence[str]) -> dict[str, list[float]]:
    """Each arm's ratios, one per workload, in the workloads' order."""
    return {arm: [all_ratios[workload][arm] for workload in all_ratios] for arm in arms}


def fastest(times: dict[str, float]) -> list[str]:
    """The arms with the workload's lowest finite time (several on a tie; none when no arm reached it)."""
    finite = {arm: time for arm, time in times.items() if not math.isinf(time)}
    if not finite:
        return []
    best = min(finite.values())
    return [arm for arm, time in finite.items() if time == best]
