"""curves.png: every arm's loss and learning rate against the step, mean over seeds with the range.

matplotlib is imported here only, with the Agg backend: no display is needed, and nothing else in
optcli pays for the import.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from optcli.compare.report import read_csv_rows


@dataclass(frozen=True)
class Curve:
    steps: list[int]
    losses: list[float]
    rates: list[float]


def read_curve(run_dir: Path) -> Curve:
    rows = read_csv_rows(run_dir / "metrics.csv")
    rows = [row for row in rows if math.isfinite(float(row["loss"]))]
    return Curve(
        [int(r["step"]) for r in rows], [float(r["loss"]) for r in rows], [float(r["lr"]) for r in rows]
    )


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


def draw_curves(path: Path, curves_by_arm: dict[str, list[Curve]], title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    figure, (loss_axis, lr_axis) = pyplot.subplots(
        2, 1, figsize=(9, 7.5), sharex=True, gridspec_kw={"height_ratios": [3, 1.4]}
    )
    longest = max((len(curve.steps) for curves in curves_by_arm.values() for curve in curves), default=0)
    window = max(1, longest // 40)
    all_positive = True
    rates: list[float] = []
    for colour, (arm, curves) in zip(_colours(), curves_by_arm.items(), strict=False):
        curves = [curve for curve in curves if curve.steps]
        if not curves:
            continue
        length = min(len(curve.steps) for curve in curves)  # the steps every seed reached
        steps = curves[0].steps[:length]
        smoothed = [_smooth(curve.losses[:length], window) for curve in curves]
        by_step = list(zip(*smoothed, strict=True))
        mean = [sum(values) / len(values) for values in by_step]
        low = [min(values) for values in by_step]
        high = [max(values) for values in by_step]
        all_positive = all_positive and min(low) > 0
        label = f"{arm} ({len(curves)} seed{'s' if len(curves) > 1 else ''})"
        loss_axis.plot(steps, mean, color=colour, linewidth=1.6, label=label)
        if len(curves) > 1:
            loss_axis.fill_between(steps, low, high, color=colour, alpha=0.2, linewidth=0)
        lr_axis.plot(steps, curves[0].rates[:length], color=colour, linewidth=1.4)
        rates += curves[0].rates[:length]
    if all_positive:
        loss_axis.set_yscale("log")
    smoothing = f", moving average over {window} steps" if window > 1 else ""
    loss_axis.set_title(f"{title}: training loss, mean over seeds with min–max band{smoothing}", fontsize=10)
    loss_axis.set_ylabel("training loss")
    loss_axis.grid(True, which="both", alpha=0.3)
    loss_axis.legend(fontsize=9)
    if rates and min(rates) > 0 and max(rates) / min(rates) > 20:  # decays over orders of magnitude
        lr_axis.set_yscale("log")
    lr_axis.set_ylabel("learning rate")
    lr_axis.set_xlabel("optimizer step")
    lr_axis.grid(True, alpha=0.3)
    figure.tight_layout()
    temporary = path.with_name(f".{path.name}.tmp.png")
    figure.savefig(temporary, dpi=110)
    pyplot.close(figure)
    temporary.replace(path)


def _colours() -> list[str]:
    return [f"C{index}" for index in range(10)] + ["black", "gray", "olive", "navy", "teal"]
