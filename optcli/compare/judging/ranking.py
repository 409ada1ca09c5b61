"""Ranking arms from their runs, and comparing two arms seed by seed: pure functions over plain results.

Runs are ranked by one metric; an arm's value is the mean over its seeds. For one seed every arm
starts from the same weights and sees the same batches, so two arms are compared seed by seed
(paired): `paired_lead` says on how many seeds one was better, and the paired 95% interval of the
mean difference.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
from collections import Counter
from dataclasses import dataclass
from typing import Literal

from optcli.metrics.table import Metric, find_metric


@dataclass(frozen=True)
class MetricInfo:
    name: str  # as --metric names it
    column: str  # the results.csv column that holds it
    lower_is_better: bool
    words: str  # "reached the lowest final loss"
    unit: str = ""
    needs_target: bool = False  # counts steps or seconds to the target loss
    percent: bool = False  # an accuracy: differences read as points


# What a comparison ranks by besides its runs' validation metrics (those come from metrics/table.py).
METRIC_INFO = {
    "final_loss": MetricInfo("final_loss", "final_loss", True, "reached the lowest final loss"),
    "best_loss": MetricInfo("best_loss", "best_loss", True, "reached the lowest best loss"),
    "steps_to_target": MetricInfo(
        "steps_to_target",
        "steps_to_target",
        True,
        "reached the target loss in the fewest steps",
        needs_target=True,
    ),
    "time_to_target": MetricInfo(
        "time_to_target", "time_to_target_s", True, "reached the target loss soonest", " s", True
    ),
    "val_loss": MetricInfo("val_loss", "val_loss", True, "reached the lowest validation loss"),
}
TARGET_METRICS = tuple(name for name, info in METRIC_INFO.items() if info.needs_target)


def metric_info(name: str | MetricInfo, measured: tuple[Metric, ...] = ()) -> MetricInfo | None:
    """The facts a ranking needs about `name`: a comparison metric, or a validation metric
    (val_f1_macro) of the runs' `measured` ones or a built-in's; None for no metric."""
    if isinstance(name, MetricInfo):
        return name
    if name in METRIC_INFO:
        return METRIC_INFO[name]
    metric = find_metric(name, measured) if name.startswith("val_") else None
    if metric is None:
        return None
    best = "highest" if metric.higher_is_better else "lowest"
    return MetricInfo(
        name,
        name,
        not metric.higher_is_better,
        f"reached the {best} validation {metric.words}",
        percent=metric.percent,
    )


def info_of(name: str | MetricInfo) -> MetricInfo:
    found = metric_info(name)
    assert found is not None, f"{name}: the plan checked its metric"
    return found


JobStatus = Literal["ok", "diverged", "failed", "interrupted"]  # how one arm's run with one seed ended


@dataclass(frozen=True)
class RunResult:
    """One arm and seed, as results.csv holds it. Metrics are None when the run has no such value."""

    arm: str
    seed: int
    status: JobStatus
    final_loss: float | None
    best_loss: float | None
    steps_to_target: int | None
    time_to_target_s: float | None
    train_time_s: float | None
    steps: int
    init_hash: str | None
    data_hash: str | None
    # val_loss, val_accuracy, ... at the end of the run, and best_val_loss, ...: summary.json's values.
    validation: dict[str, float | None] = dataclasses.field(default_factory=dict)
    lr_changed: bool | None = None  # with a scheduler: whether the learning rate ever changed

    def metric(self, name: str) -> float | None:
        if self.status != "ok":
            return None
        value = (
            self.validation.get(name) if name.startswith("val_") else getattr(self, METRIC_INFO[name].column)
        )
        return float(value) if value is not None else None


@dataclass(frozen=True)
class ArmSummary:
    arm: str
    rank: int
    values: tuple[float, ...]  # the metric of each ok run that has it
    seeds: tuple[int, ...]  # the seed of each of those values
    runs: int  # runs that ended (0: the arm never ran, e.g. after an interrupt)
    runs_diverged: int
    runs_failed: int  # failed (an interrupted run did not fail: it counts apart)
    mean_train_time_s: float | None
    runs_interrupted: int = 0  # stopped by the user (Ctrl-C, SIGTERM) before they ended
    closeness: float | None = None  # with a target metric: the mean best loss, for arms short of it
    controlled: bool = True  # started from the same weights and data as the other arms, seed by seed
    lr_never_changed: bool = False  # it has a scheduler, yet the rate stayed the same in every run

    @property
    def mean(self) -> float | None:
        return statistics.fmean(self.values) if self.values else None

    @property
    def std(self) -> float | None:
        """The sample standard deviation over seeds (0 for a single seed)."""
        if not self.values:
            return None
        return statistics.stdev(self.values) if len(self.values) > 1 else 0.0

    @property
    def low(self) -> float | None:
        return min(self.values) if self.values else None

    @property
    def high(self) -> float | None:
        return max(self.values) if self.values else None

    @property
    def trouble(self) -> bool:
        """Some seed diverged, failed or was interrupted: ranked after every arm whose seeds all finished."""
        return self.runs_diverged + self.runs_failed + self.runs_interrupted > 0


def rank_arms(results: list[RunResult], metric: str | MetricInfo, arm_order: list[str]) -> list[ArmSummary]:
    """One summary per arm, best first: finished arms before troubled ones, then by how many seeds have
    a value (reached the target), then by the mean; arms that never reached a target by how close they
    came (their best loss); arms that never ran last."""
    info = info_of(metric)
    uncontrolled = _uncontrolled_arms(results)
    unranked = []
    for arm in arm_order:
        runs = [result for result in results if result.arm == arm]
        valued = [(run.seed, value) for run in runs if (value := run.metric(info.name)) is not None]
        values, seeds = tuple(value for _, value in valued), tuple(seed for seed, _ in valued)
        times = [run.train_time_s for run in runs if run.status == "ok" and run.train_time_s is not None]
        unranked.append(
            ArmSummary(
                arm=arm,
                rank=0,
                values=values,
                seeds=seeds,
                runs=len(runs),
                runs_diverged=sum(run.status == "diverged" for run in runs),
                runs_failed=sum(run.status == "failed" for run in runs),
                mean_train_time_s=statistics.fmean(times) if times else None,
                runs_interrupted=sum(run.status == "interrupted" for run in runs),
                closeness=_mean_best_loss(runs) if info.needs_target else None,
                controlled=arm not in uncontrolled,
                lr_never_changed=bool(runs) and all(run.lr_changed is False for run in runs),
            )
        )

    def key(summary: ArmSummary) -> tuple[bool, bool, int, float]:
        never_ran = summary.runs == 0
        if summary.mean is None:
            return (
                never_ran,
                summary.trouble,
                0,
                summary.closeness if summary.closeness is not None else math.inf,
            )
        direction = 1.0 if info.lower_is_better else -1.0
        return (never_ran, summary.trouble, -len(summary.values), direction * summary.mean)

    ordered = sorted(unranked, key=key)  # stable: ties keep the order the arms were given in
    ranked: list[ArmSummary] = []
    for position, summary in enumerate(ordered, start=1):
        previous = ranked[-1] if ranked else None
        # Identical results on every seed share a rank: neither is ahead of the other.
        same = (
            previous is not None
            and summary.values
            and (summary.seeds, summary.values) == (previous.seeds, previous.values)
        )
        ranked.append(dataclasses.replace(summary, rank=previous.rank if same and previous else position))
    return ranked


def _mean_best_loss(runs: list[RunResult]) -> float | None:
    losses = [run.best_loss for run in runs if run.status == "ok" and run.best_loss is not None]
    return statistics.fmean(losses) if losses else None


def _uncontrolled_arms(results: list[RunResult]) -> set[str]:
    """Arms whose initial weights or data differ, for some seed, from what most arms had: another model
    or dataset, so not a controlled comparison with the others. Where no start is the most common (two
    arms, two models), every arm is marked: none is the reference."""
    uncontrolled = set()
    for seed in {result.seed for result in results}:
        runs = [r for r in results if r.seed == seed and r.init_hash is not None and r.data_hash is not None]
        counts = Counter((run.init_hash, run.data_hash) for run in runs).most_common()
        if len(counts) > 1:
            (common, most), (_, second) = counts[0], counts[1]
            reference = common if most > second else None
            uncontrolled |= {run.arm for run in runs if (run.init_hash, run.data_hash) != reference}
    return uncontrolled


# Two-sided 95% quantiles of Student's t for 1 to 30 degrees of freedom; beyond, the normal's 1.96.
T_95 = (
    *(12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228),
    *(2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086),
    *(2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042),
)


@dataclass(frozen=True)
class PairedLead:
    """The winner against another arm on the seeds both have a value for."""

    seeds: int
    wins: int  # seeds on which the winner is strictly better
    low: float  # the paired 95% interval of the mean improvement (positive: the winner is better)
    high: float
    identical: bool  # the same value on every seed

    @property
    def clear(self) -> bool:
        return self.wins == self.seeds and self.low > 0


def paired_lead(winner: ArmSummary, other: ArmSummary, lower_is_better: bool) -> PairedLead | None:
    """The paired comparison, or None with fewer than two shared seeds (noise cannot be told)."""
    theirs = dict(zip(other.seeds, other.values, strict=True))
    sign = 1.0 if lower_is_better else -1.0
    gains = [
        sign * (theirs[seed] - value)
        for seed, value in zip(winner.seeds, winner.values, strict=True)
        if seed in theirs
    ]
    if len(gains) < 2:
        return None
    low, high = paired_interval(gains)
    return PairedLead(len(gains), sum(gain > 0 for gain in gains), low, high, not any(gains))


def paired_interval(gains: list[float]) -> tuple[float, float]:
    """The 95% interval of the mean of two or more paired differences (Student's t)."""
    freedom = len(gains) - 1
    quantile = T_95[freedom - 1] if freedom <= len(T_95) else 1.96
    mean, half = statistics.fmean(gains), quantile * statistics.stdev(gains) / math.sqrt(len(gains))
    return mean - half, mean + half
