"""What a suite leaves beside its workloads' comparisons: `workloads.csv` (each arm's median steps and
seconds to each workload's target), `profile.csv` and `profile.png` (each arm's performance profile),
`suite.json` (scores, per-workload winners) and the verdict, all read from the workloads' results."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from optcli.compare.judging import profiles
from optcli.compare.judging.ranking import RunResult, paired_interval
from optcli.train.rundir import write_atomically
from optcli.train.sinks import format_number

if TYPE_CHECKING:
    from optcli.compare.planning.suite_plan import SuitePlan
    from optcli.compare.reporting.report import ComparisonResult


@dataclass(frozen=True)
class ArmOnWorkload:
    """One arm's time to one workload's target, over the seeds."""

    median_steps: float  # inf when not reached
    median_seconds: float
    reached: int  # seeds that reached the target
    seeds: int


@dataclass(frozen=True)
class SuiteSummary:
    times: dict[str, dict[str, ArmOnWorkload]]  # workload -> arm -> times
    ratios: dict[str, dict[str, float]]  # workload -> arm -> ratio to the fastest
    scores: dict[str, float]  # arm -> area under its profile, best first
    fastest: dict[str, list[str]]  # workload -> the arms with its lowest time
    verdict: str


def summarize_suite(suite: SuitePlan, results: dict[str, ComparisonResult]) -> SuiteSummary:
    times = {
        workload: {arm: _times(result.results, arm) for arm in suite.arms}
        for workload, result in results.items()
    }
    medians = {
        workload: {arm: measured(on, suite) for arm, on in by_arm.items()}
        for workload, by_arm in times.items()
    }
    ratios = profiles.ratios(medians)
    per_arm = profiles.by_arm(ratios, suite.arms)
    scores = dict(
        sorted(
            ((arm, profiles.score(per_arm[arm], suite.tau_max)) for arm in suite.arms),
            key=lambda item: -item[1],
        )
    )
    fastest = {workload: profiles.fastest(by_arm) for workload, by_arm in medians.items()}
    verdict = _verdict(suite, results, times, scores, fastest)
    return SuiteSummary(times, ratios, scores, fastest, verdict)


def _times(results: list[RunResult], arm: str) -> ArmOnWorkload:
    runs = [result for result in results if result.arm == arm]
    steps = [float(run.steps_to_target) if run.steps_to_target is not None else None for run in runs]
    seconds = [run.time_to_target_s for run in runs]
    return ArmOnWorkload(
        profiles.median_time(steps),
        profiles.median_time(seconds),
        sum(step is not None for step in steps),
        len(runs),
    )


def _verdict(
    suite: SuitePlan,
    results: dict[str, ComparisonResult],
    times: dict[str, dict[str, ArmOnWorkload]],
    scores: dict[str, float],
    fastest: dict[str, list[str]],
) -> str:
    """The score ranking, how often each arm was fastest, where the winner missed a target, and
    whether each workload's winner led beyond seed noise (compare's paired rule)."""
    ranking = ", ".join(f"{arm} {score:.3f}" for arm, score in scores.items())
    lines = [
        f"performance-profile scores ({measure_words(suite)} to target, area under the profile from 1 to "
        f"{suite.tau_max:g}, 1 is fastest everywhere): {ranking}"
    ]
    wins = {arm: [workload for workload, arms in fastest.items() if arm in arms] for arm in suite.arms}
    counted = [
        f"{arm} on {len(won)} of {len(fastest)} ({', '.join(won)})" for arm, won in wins.items() if won
    ]
    lines.append("fastest: " + ("; ".join(counted) if counted else "no arm reached any target"))
    winner = next(iter(scores)) if scores else None
    if winner is not None:
        missed = [w for w, by_arm in times.items() if math.isinf(measured(by_arm[winner], suite))]
        if missed:
            lines.append(f"{winner} did not reach the target on {', '.join(missed)}")
    for workload, result in results.items():
        lines.append(f"{workload}: {_lead_on(result.results, fastest[workload], times[workload], suite)}")
    return "\n".join(lines)


def _lead_on(
    results: list[RunResult], fastest: list[str], times: dict[str, ArmOnWorkload], suite: SuitePlan
) -> str:
    """The workload's fastest arm (by median) against the next, seed by seed (compare's paired rule,
    a seed that missed the target counting as slower than one that reached it)."""
    ordered = sorted(times, key=lambda arm: measured(times[arm], suite))
    if not fastest:
        return "no arm reached its target on most seeds"
    winner = fastest[0]
    runner_up = next((arm for arm in ordered if arm != winner), None)
    if runner_up is None:
        return f"{winner} fastest"
    if len(fastest) > 1:
        return f"{', '.join(fastest)} tied"
    own, other = (_per_seed(results, arm, suite) for arm in (winner, runner_up))
    seeds = sorted(set(own) & set(other))
    if len(seeds) < 2:
        return f"{winner} ahead of {runner_up}; seed noise unknown (one seed)"
    wins = sum(own[seed] < other[seed] for seed in seeds)
    both = [
        (own[seed], other[seed]) for seed in seeds if math.isfinite(own[seed]) and math.isfinite(other[seed])
    ]
    clear = wins == len(seeds) and (len(both) < 2 or paired_interval([o - w for w, o in both])[0] > 0)
    words = "beyond seed noise" if clear else f"within seed noise (faster on {wins} of {len(seeds)} seeds)"
    return f"{winner} ahead of {runner_up}, {words}"


def _per_seed(results: list[RunResult], arm: str, suite: SuitePlan) -> dict[int, float]:
    found = {}
    for run in results:
        if run.arm == arm:
            value = run.steps_to_target if suite.time == "steps" else run.time_to_target_s
            found[run.seed] = math.inf if value is None else float(value)
    return found


def measured(on: ArmOnWorkload, suite: SuitePlan) -> float:
    """The arm's median time to the workload's target, in what the suite measures (--time)."""
    return on.median_steps if suite.time == "steps" else on.median_seconds


def measure_words(suite: SuitePlan) -> str:
    """What the suite measures, in words: steps, or training seconds."""
    return "steps" if suite.time == "steps" else "training seconds"


def write_suite_report(
    directory: Path, suite: SuitePlan, results: dict[str, ComparisonResult]
) -> SuiteSummary:
    summary = summarize_suite(suite, results)
    rows = ["arm,workload,target,median_steps_to_target,median_time_to_target_s,seeds_reached,seeds"]
    targets = {name: plan.target for name, plan in suite.workloads}
    for workload, by_arm in summary.times.items():
        target = targets[workload]
        shown = f"{target.metric}={target.value:g}" if target is not None else ""
        for arm, on in by_arm.items():
            cells = [
                arm,
                workload,
                shown,
                _number(on.median_steps),
                _number(on.median_seconds),
                on.reached,
                on.seeds,
            ]
            rows.append(",".join(str(cell) for cell in cells))
    write_atomically(directory / "workloads.csv", "\n".join(rows) + "\n")
    points = profiles.profile_points(summary.ratios, suite.tau_max)
    per_arm = profiles.by_arm(summary.ratios, suite.arms)
    profile_rows = ["tau," + ",".join(suite.arms)]
    for tau in points:
        profile_rows.append(
            ",".join(
                [format_number(tau), *(format_number(profiles.rho(per_arm[a], tau)) for a in suite.arms)]
            )
        )
    write_atomically(directory / "profile.csv", "\n".join(profile_rows) + "\n")
    write_atomically(directory / "suite.json", json.dumps(_document(suite, summary), indent=2) + "\n")
    draw_profile(directory / "profile.png", points, per_arm, summary.scores, suite)
    return summary


def _number(value: float) -> str:
    return "inf" if math.isinf(value) else format_number(value)


def _document(suite: SuitePlan, summary: SuiteSummary) -> dict[str, Any]:
    def finite(value: float) -> float | None:
        return None if math.isinf(value) else value

    return {
        "name": suite.name,
        "time": suite.time,
        "tau_max": suite.tau_max,
        "seeds": list(suite.seeds),
        "scores": summary.scores,
        "ranking": list(summary.scores),
        "workloads": {
            name: {
                "target": plan.target.record() if plan.target is not None else None,
                "fastest": summary.fastest[name],
                "arms": {
                    arm: {
                        "median_steps_to_target": finite(on.median_steps),
                        "median_time_to_target_s": finite(on.median_seconds),
                        "ratio": finite(summary.ratios[name][arm]),
                        "seeds_reached": on.reached,
                        "seeds": on.seeds,
                    }
                    for arm, on in summary.times[name].items()
                },
            }
            for name, plan in suite.workloads
        },
        "verdict": summary.verdict,
    }


def draw_profile(
    path: Path, taus: list[float], per_arm: dict[str, list[float]], scores: dict[str, float], suite: SuitePlan
) -> None:
    """Each arm's ρ(τ) as a step curve on a log τ axis from 1 to τ_max, AlgoPerf style: `taus` where a
    profile changes, `per_arm` each arm's ratios, `scores` its area."""
    from optcli.plotting import load_pyplot

    pyplot = load_pyplot()
    figure, axis = pyplot.subplots(figsize=(8, 4.5))
    for arm, arm_ratios in per_arm.items():
        values = [profiles.rho(arm_ratios, tau) for tau in taus]
        axis.step(taus, values, where="post", linewidth=1.8, label=f"{arm} (score {scores[arm]:.3f})")
    axis.set_xscale("log")
    axis.set_xlim(1, suite.tau_max)
    ticks = [tick for tick in (1, 1.25, 1.5, 2, 3, 4, 6, 8, 10, 20, 50, 100) if tick <= suite.tau_max]
    axis.set_xticks(ticks, [f"{tick:g}" for tick in ticks])
    axis.minorticks_off()
    axis.set_ylim(-0.02, 1.02)
    axis.set_xlabel(f"τ: {measure_words(suite)} to target, as a multiple of the fastest arm's")
    axis.set_ylabel("fraction of workloads within τ")
    axis.set_title(f"{suite.name}: performance profiles over {len(suite.workloads)} workloads", fontsize=10)
    axis.grid(True, which="both", alpha=0.3)
    axis.legend(fontsize=8, loc="lower right")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    pyplot.close(figure)
