"""curves.png: every arm's loss and learning rate against the step, mean over seeds with the range,
and the validation metric when that is what ranks the arms."""

from __future__ import annotations

import math
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from optcli.plotting import load_pyplot
from optcli.train.rundir import read_csv_rows


@dataclass(frozen=True)
class Curve:
    steps: list[int]
    losses: list[float]
    rates: list[float]
    epoch_steps: list[int]  # the step at each epoch's end
    validation: list[float]  # the ranking's validation metric at each epoch's end (empty without one)


def read_curve(run_dir: Path, validation_metric: str | None = None) -> Curve:
    rows = read_csv_rows(run_dir / "metrics.csv")
    rows = [row for row in rows if math.isfinite(float(row["loss"]))]
    epochs = read_csv_rows(run_dir / "epochs.csv") if validation_metric else []
    epochs = [row for row in epochs if row.get(validation_metric or "") not in (None, "")]
    return Curve(
        [int(r["step"]) for r in rows],
        [float(r["loss"]) for r in rows],
        [float(r["lr"]) for r in rows],
        [int(row["step"]) for row in epochs],
        [float(row[validation_metric or ""]) for row in epochs],
    )


def loss_limits(means: dict[str, list[float]], diverged: Collection[str]) -> tuple[float, float] | None:
    """The loss axis's range: that of the arms that did not diverge, so that a diverging arm's last
    huge values do not squash the others (it is drawn clipped at the top edge)."""
    kept = [value for arm, values in means.items() if arm not in diverged for value in values]
    if not kept or len(kept) == sum(len(values) for values in means.values()):
        return None  # nothing diverged (or everything did): matplotlib's own range
    low, high = min(kept), max(kept)
    return low, high + (high - low) * 0.05 if high > low else high * 1.05 + 1e-12


def identical_to(means: dict[str, list[float]]) -> dict[str, str]:
    """Arms whose mean curve equals an earlier arm's: they would hide each other."""
    same: dict[str, str] = {}
    arms = list(means)
    for index, arm in enumerate(arms):
        earlier = next((other for other in arms[:index] if means[other] == means[arm] and means[arm]), None)
        if earlier is not None:
            same[arm] = same.get(earlier, earlier)
    return same


def _smooth(values: list[float], window: int) -> list[float]:
    """A trailing moving average: one batch's loss is noisy; the trend is what tells arms apart."""
    if window <= 1:
        return values
    smoothed, total = [], 0.0
    for index, value in enumerate(values):
        total += value
        if index >= window:
            total -= values[index - window]
        smoothed.append(total / min(index + 1, window))
    return smoothed


def draw_curves(
    path: Path,
    curves_by_arm: dict[str, list[Curve]],
    title: str,
    diverged: Collection[str] = (),
    validation_metric: str | None = None,
) -> None:
    pyplot = load_pyplot()
    with_validation = validation_metric is not None and any(
        c.validation for cs in curves_by_arm.values() for c in cs
    )
    ratios = [3, 1.4, 2] if with_validation else [3, 1.4]
    figure, axes = pyplot.subplots(
        len(ratios),
        1,
        figsize=(9, 7.5 + 2.5 * with_validation),
        sharex=True,
        gridspec_kw={"height_ratios": ratios},
    )
    longest = max((len(curve.steps) for curves in curves_by_arm.values() for curve in curves), default=0)
    window = max(1, longest // 40)
    bands = {arm: _band(cs, window) for arm, cs in curves_by_arm.items() if any(c.steps for c in cs)}
    means = {arm: band[1] for arm, band in bands.items()}
    same = identical_to(means)
    styles = ["-", "--", ":", "-."]  # identical curves stay distinguishable
    for index, (colour, (arm, (steps, mean, low, high, curves))) in enumerate(
        zip(_colours(), bands.items(), strict=False)
    ):
        notes = [f"{len(curves)} seed{'s' if len(curves) > 1 else ''}"]
        notes += (["diverged"] if arm in diverged else []) + (
            [f"identical to {same[arm]}"] if arm in same else []
        )
        style = styles[index % len(styles)]
        axes[0].plot(
            steps, mean, color=colour, linestyle=style, linewidth=1.6, label=f"{arm} ({', '.join(notes)})"
        )
        if len(curves) > 1:
            axes[0].fill_between(steps, low, high, color=colour, alpha=0.2, linewidth=0)
        axes[1].plot(steps, curves[0].rates[: len(steps)], color=colour, linestyle=style, linewidth=1.4)
        if with_validation:
            _plot_validation(axes[2], curves, colour, style)
    positive = all(min(band[2]) > 0 for band in bands.values())
    _label(
        axes,
        title,
        window,
        loss_limits(means, diverged),
        positive,
        validation_metric if with_validation else None,
    )
    figure.tight_layout()
    temporary = path.with_name(f".{path.name}.tmp.png")
    figure.savefig(temporary, dpi=110)
    pyplot.close(figure)
    temporary.replace(path)


def _label(
    axes: Any,
    title: str,
    window: int,
    limits: tuple[float, float] | None,
    positive: bool,
    validation: str | None,
) -> None:
    """Scales, limits, titles and labels: a log scale where values span decades."""
    loss_axis, lr_axis = axes[0], axes[1]
    if positive and (limits is None or limits[0] > 0):
        loss_axis.set_yscale("log")
    if limits is not None:
        loss_axis.set_ylim(*limits)
    smoothing = f", moving average over {window} steps" if window > 1 else ""
    loss_axis.set_title(f"{title}: training loss, mean over seeds with min–max band{smoothing}", fontsize=10)
    loss_axis.set_ylabel("training loss")
    loss_axis.grid(True, which="both", alpha=0.3)
    loss_axis.legend(fontsize=9)
    rates = [rate for line in lr_axis.get_lines() for rate in line.get_ydata()]
    if rates and min(rates) > 0 and max(rates) / min(rates) > 20:  # decays over orders of magnitude
        lr_axis.set_yscale("log")
    lr_axis.set_ylabel("learning rate")
    lr_axis.grid(True, alpha=0.3)
    if validation is not None:
        axes[2].set_ylabel(f"{validation} (epoch ends)")
        axes[2].grid(True, alpha=0.3)
    axes[-1].set_xlabel("optimizer step")


def _band(
    curves: list[Curve], window: int
) -> tuple[list[int], list[float], list[float], list[float], list[Curve]]:
    """The steps every seed reached, and the smoothed loss's mean, minimum and maximum over seeds."""
    curves = [curve for curve in curves if curve.steps]
    length = min(len(curve.steps) for curve in curves)
    by_step = list(zip(*[_smooth(curve.losses[:length], window) for curve in curves], strict=True))
    mean = [sum(values) / len(values) for values in by_step]
    return curves[0].steps[:length], mean, [min(v) for v in by_step], [max(v) for v in by_step], curves


def _plot_validation(axis: Any, curves: list[Curve], colour: str, style: str) -> None:
    length = min(len(curve.validation) for curve in curves)
    if length:
        mean = [sum(curve.validation[i] for curve in curves) / len(curves) for i in range(length)]
        axis.plot(
            curves[0].epoch_steps[:length], mean, color=colour, linestyle=style, marker=".", linewidth=1.4
        )


def _colours() -> list[str]:
    return [f"C{index}" for index in range(10)] + ["black", "gray", "olive", "navy", "teal"]
