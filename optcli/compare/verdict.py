"""From finished runs to a ranking and a verdict in words: pure functions over plain results.

Runs are ranked by one metric; an arm's value is the mean over its seeds. For one seed every arm
starts from the same weights and sees the same batches, so the winner and the runner-up are compared
seed by seed (paired): the lead is called larger than seed noise only when the winner is better on
every seed and the paired 95% interval of the mean difference excludes zero. Otherwise the two are
"within seed noise" of each other: other seeds could have ordered them the other way round.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class MetricInfo:
    column: str  # the results.csv column that holds it
    lower_is_better: bool
    words: str  # "reached the lowest final loss"
    unit: str = ""
    needs_target: bool = False  # counts steps or seconds to the target loss


METRIC_INFO = {
    "final_loss": MetricInfo("final_loss", True, "reached the lowest final loss"),
    "best_loss": MetricInfo("best_loss", True, "reached the lowest best loss"),
    "steps_to_target": MetricInfo(
        "steps_to_target", True, "reached the target loss in the fewest steps", needs_target=True
    ),
    "time_to_target": MetricInfo("time_to_target_s", True, "reached the target loss soonest", " s", True),
    "val_loss": MetricInfo("val_loss", True, "reached the lowest validation loss"),
    "val_accuracy": MetricInfo("val_accuracy", False, "reached the highest validation accuracy"),
}
TARGET_METRICS = tuple(name for name, info in METRIC_INFO.items() if info.needs_target)


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
    val_loss: float | None = None  # at the end of the run
    val_accuracy: float | None = None
    best_val_loss: float | None = None
    best_val_accuracy: float | None = None
    lr_changed: bool | None = None  # with a scheduler: whether the learning rate ever changed

    def metric(self, name: str) -> float | None:
        if self.status != "ok":
            return None
        value = getattr(self, METRIC_INFO[name].column)
        return float(value) if value is not None else None


@dataclass(frozen=True)
class ArmSummary:
    arm: str
    rank: int
    values: tuple[float, ...]  # the metric of each ok run that has it
    seeds: tuple[int, ...]  # the seed of each of those values
    runs: int  # runs that ended (0: the arm never ran, e.g. after an interrupt)
    runs_diverged: int
    runs_failed: int  # failed or interrupted
    mean_train_time_s: float | None
    runs_interrupted: int = 0  # of runs_failed, those stopped by the user
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
        """Some seed diverged or failed: ranked after every arm whose seeds all finished."""
        return self.runs_diverged + self.runs_failed > 0


def rank_arms(results: list[RunResult], metric: str, arm_order: list[str]) -> list[ArmSummary]:
    """One summary per arm, best first: finished arms before troubled ones, then by how many seeds have
    a value (reached the target), then by the mean; arms that never reached a target by how close they
    came (their best loss); arms that never ran last."""
    info = METRIC_INFO[metric]
    uncontrolled = _uncontrolled_arms(results)
    unranked = []
    for arm in arm_order:
        runs = [result for result in results if result.arm == arm]
        valued = [(run.seed, value) for run in runs if (value := run.metric(metric)) is not None]
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
                runs_failed=sum(run.status in ("failed", "interrupted") for run in runs),
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
    or dataset, so not a controlled comparison with the others."""
    uncontrolled = set()
    for seed in {result.seed for result in results}:
        runs = [r for r in results if r.seed == seed and r.init_hash is not None and r.data_hash is not None]
        fingerprints = [(run.init_hash, run.data_hash) for run in runs]
        if len(set(fingerprints)) > 1:
            common = max(set(fingerprints), key=fingerprints.count)
            uncontrolled |= {run.arm for run in runs if (run.init_hash, run.data_hash) != common}
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
    freedom = len(gains) - 1
    quantile = T_95[freedom - 1] if freedom <= len(T_95) else 1.96
    mean, half = statistics.fmean(gains), quantile * statistics.stdev(gains) / math.sqrt(len(gains))
    return PairedLead(len(gains), sum(gain > 0 for gain in gains), mean - half, mean + half, not any(gains))


@dataclass(frozen=True)
class Verdict:
    text: str
    winner: str | None
    runner_up: str | None
    within_noise: bool | None  # None when it cannot be told (one arm, or one seed)
    identical: bool = False  # the winner and the runner-up gave the same value on every seed


def give_verdict(ranked: list[ArmSummary], metric: str, target_loss: float | None = None) -> Verdict:
    """The ranking in one sentence, e.g. 'adam reached the lowest final loss, 0.12 ± 0.01 over 3 seeds,
    2.3× lower than sgd; adam and rmsprop are within seed noise of each other'."""
    info = METRIC_INFO[metric]
    finished = [arm for arm in ranked if arm.mean is not None]
    if not finished:
        return Verdict(_nobody(ranked, metric, target_loss), None, None, None)
    winner = finished[0]
    words = info.words if metric not in TARGET_METRICS else _target_words(info, target_loss)
    parts = [f"{winner.arm} {words}, {_value(winner, info)} over {_seeds(winner)}"]
    runner_up = finished[1] if len(finished) > 1 else None
    lead = paired_lead(winner, runner_up, info.lower_is_better) if runner_up else None
    within: bool | None = None if lead is None else not lead.clear
    if runner_up is not None:
        parts[0] += _against_runner_up(winner, runner_up, info)
        parts.append(_lead_words(winner.arm, runner_up.arm, lead))
    # The last arm whose every seed finished, as context (a partial arm's mean would compare unlike
    # with like: one seed of three reached the target).
    complete = [arm for arm in finished if len(arm.values) == arm.runs and not arm.trouble]
    if len(complete) > 2 and complete[-1] is not runner_up and complete[-1].mean is not None:
        parts.append(f"{complete[-1].arm} came last ({_value(complete[-1], info)})")
    parts += _caveats(ranked)
    identical = lead is not None and lead.identical
    return Verdict("; ".join(parts), winner.arm, runner_up.arm if runner_up else None, within, identical)


def _caveats(ranked: list[ArmSummary]) -> list[str]:
    """What qualifies the ranking: runs that diverged, failed or were interrupted, arms that never ran or
    missed the target, arms not comparable with the others, schedules that never acted."""
    notes = []
    for arm in ranked:
        if arm.runs == 0:
            notes.append(f"{arm.arm} was not run")
            continue
        if arm.runs_diverged:
            notes.append(f"{arm.arm} diverged in {arm.runs_diverged} of {arm.runs} runs")
        if arm.runs_failed > arm.runs_interrupted:
            notes.append(f"{arm.arm} failed in {arm.runs_failed - arm.runs_interrupted} of {arm.runs} runs")
        if arm.runs_interrupted:
            notes.append(f"{arm.arm} was interrupted in {arm.runs_interrupted} of {arm.runs} runs")
        if not arm.trouble and len(arm.values) < arm.runs:
            notes.append(f"{arm.arm} missed the target in {arm.runs - len(arm.values)} of {arm.runs} runs")
        if arm.lr_never_changed:
            notes.append(f"{arm.arm}'s learning rate never changed: its scheduler did not act in this run")
    uncontrolled = [arm.arm for arm in ranked if not arm.controlled]
    if uncontrolled:
        notes.append(
            f"{', '.join(uncontrolled)} did not start from the same weights and data as the other arms for "
            "every seed (another model or dataset): not a controlled comparison with them"
        )
    return notes


def _against_runner_up(winner: ArmSummary, runner_up: ArmSummary, info: MetricInfo) -> str:
    """', 1.2× lower than rmsprop (the runner-up, 0.138 ± 0.013)', when both finished every seed."""
    if winner.mean is None or runner_up.mean is None or len(runner_up.values) < runner_up.runs:
        return ""
    if runner_up.trouble or winner.values == runner_up.values:
        return ""
    compared = _compared(winner.mean, runner_up.mean, info, runner_up.arm)
    return f", {compared} (the runner-up, {_value(runner_up, info)})"


def _lead_words(winner: str, runner_up: str, lead: PairedLead | None) -> str:
    if lead is None:
        return (
            f"one seed each, so seed noise is unknown: run more seeds to tell {winner} and {runner_up} apart"
        )
    if lead.identical:
        return f"{winner} and {runner_up} gave identical results on every seed"
    if lead.clear:
        return f"{winner} was better on all {lead.seeds} seeds, a lead larger than seed noise"
    return (
        f"{winner} and {runner_up} are within seed noise of each other "
        f"({winner} better on {lead.wins} of {lead.seeds} seeds)"
    )


def _target_words(info: MetricInfo, target_loss: float | None) -> str:
    return info.words.replace(
        "the target loss", f"the target loss {target_loss:g}" if target_loss else "the target"
    )


def _nobody(ranked: list[ArmSummary], metric: str, target_loss: float | None) -> str:
    if metric in TARGET_METRICS and not any(arm.trouble for arm in ranked):
        return (
            f"no arm reached the target loss {target_loss:g} in any run"
            if target_loss
            else "no arm reached the target"
        )
    return "no arm finished a run: every run diverged or failed"


def format_value(value: float, info: MetricInfo, like: float | None = None) -> str:
    """Three significant digits of `like` (default: the value itself), so that a mean, its spread and
    its range are written to the same decimal place: 0.0340 ± 0.0169, not 0.034 ± 0.0169."""
    if info.column == "steps_to_target":
        return f"{value:.0f}"
    scale = abs(like if like is not None else value)
    if 0 < scale < 1e-3:
        return f"{value:.2e}{info.unit}"  # fixed point would print 0.0000
    decimals = 0 if scale == 0 or scale >= 100 else max(0, 2 - math.floor(math.log10(scale)))
    return f"{value:.{decimals}f}{info.unit}"


def _value(arm: ArmSummary, info: MetricInfo) -> str:
    assert arm.mean is not None and arm.std is not None  # only called for arms with values
    return f"{format_value(arm.mean, info)} ± {format_value(arm.std, info, like=arm.mean)}"


def _seeds(arm: ArmSummary) -> str:
    count = len(arm.values)
    return "1 seed" if count == 1 else f"{count} seeds"


def _compared(best: float, other: float, info: MetricInfo, other_arm: str) -> str:
    """'2.3× lower than sgd' where a ratio means something, else the difference."""
    if info.column.endswith("accuracy"):
        return f"{abs(best - other) * 100:.1f} points higher than {other_arm}"
    if best > 0 and other > 0 and best != other:
        ratio = other / best if info.lower_is_better else best / other
        word = (
            "fewer steps"
            if info.column == "steps_to_target"
            else "lower"
            if info.lower_is_better
            else "higher"
        )
        if info.column == "time_to_target_s":
            word = "less time"
        return f"{ratio:.2g}× {word} than {other_arm}"
    difference = abs(other - best)
    return (
        f"{format_value(difference, info)} {'lower' if info.lower_is_better else 'higher'} than {other_arm}"
    )
