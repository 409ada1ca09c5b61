"""The verdict in words: who won, against the runner-up, and how sure that is.

The lead over the runner-up is called larger than seed noise only when the winner is better on every
seed and the paired 95% interval of the mean difference excludes zero (`ranking.paired_lead`);
otherwise the two are "within seed noise" of each other: other seeds could have ordered them the
other way round.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from optcli.compare.judging.ranking import (
    ArmSummary,
    MetricInfo,
    PairedLead,
    info_of,
    paired_lead,
)
from optcli.compare.judging.targets import Target


@dataclass(frozen=True)
class Verdict:
    text: str
    winner: str | None
    runner_up: str | None
    within_noise: bool | None  # None when it cannot be told (one arm, or one seed)
    identical: bool = False  # the winner and the runner-up gave the same value on every seed


def give_verdict(ranked: list[ArmSummary], metric: str | MetricInfo, target: Target | None = None) -> Verdict:
    """The ranking in one sentence, e.g. 'adam reached the lowest final loss, 0.12 ± 0.01 over 3 seeds,
    2.3× lower than sgd; adam and rmsprop are within seed noise of each other'."""
    info = info_of(metric)
    finished = [arm for arm in ranked if arm.mean is not None]
    if not finished:
        return Verdict(_nobody(ranked, info, target), None, None, None)
    winner = finished[0]
    words = _target_words(info, target) if info.needs_target else info.words
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
        if arm.runs_failed:
            notes.append(f"{arm.arm} failed in {arm.runs_failed} of {arm.runs} runs")
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


def _target_words(info: MetricInfo, target: Target | None) -> str:
    return info.words.replace("the target loss", target.words() if target else "the target")


def _nobody(ranked: list[ArmSummary], info: MetricInfo, target: Target | None) -> str:
    if info.needs_target and not any(arm.trouble for arm in ranked):
        return f"no arm reached {target.words()} in any run" if target else "no arm reached the target"
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
    if info.percent:
        return f"{abs(best - other) * 100:.1f} points higher than {other_arm}"
    if info.column.endswith("r2"):  # a ratio of R² values means nothing; their difference does
        return f"{abs(best - other):.3g} higher than {other_arm}"
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
        if ratio < 1.1:  # "1×" says nothing: a small lead reads better as a percentage
            return f"{(ratio - 1) * 100:.1f}% {word} than {other_arm}"
        return f"{ratio:.2g}× {word} than {other_arm}"
    difference = abs(other - best)
    return (
        f"{format_value(difference, info)} {'lower' if info.lower_is_better else 'higher'} than {other_arm}"
    )


def with_protocol(verdict: Verdict, protocol: list[str]) -> Verdict:
    """A tuned comparison's verdict: the protocol in words first, its warnings after."""
    if not protocol:
        return verdict
    first, *warnings = protocol
    text = f"{first[0].upper()}{first[1:]}. {verdict.text}" + "".join(
        f"\nwarning: {line}" for line in warnings
    )
    return dataclasses.replace(verdict, text=text)
