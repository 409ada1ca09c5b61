"""sensitivity.png: a tuned comparison's metric against each tuned dimension, an arm per colour, the
selected trial of each marked, diverged or failed trials drawn at the top edge."""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from optcli.plotting import load_pyplot

if TYPE_CHECKING:
    from optcli.compare.planning.tuning import Selection, Tuning


def draw_sensitivity(
    path: Path, tuning: Tuning, rows: list[dict[str, Any]], chosen: dict[str, Selection], metric: str
) -> None:
    plt = load_pyplot()
    keys = sorted({key for space in tuning.spaces.values() for key in space})
    figure, axes = plt.subplots(1, len(keys), figsize=(5 * len(keys), 4), squeeze=False)
    finite = [row["metric"] for row in rows if row["metric"] is not None and math.isfinite(row["metric"])]
    top = max(finite) if finite else 1.0
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for axis, key in zip(axes[0], keys, strict=True):
        for number, arm in enumerate(tuning.spaces):
            if key not in tuning.spaces[arm]:
                continue
            colour = colours[number % len(colours)]
            own = [row for row in rows if row["arm"] == arm]
            ok = [
                (row["setting"][key], row["metric"])
                for row in own
                if row["metric"] is not None and math.isfinite(row["metric"])
            ]
            lost = [
                row["setting"][key]
                for row in own
                if row["metric"] is None or not math.isfinite(row["metric"])
            ]
            axis.scatter([x for x, _ in ok], [y for _, y in ok], color=colour, label=arm, s=24)
            axis.scatter(lost, [top] * len(lost), color=colour, marker="x", s=36)  # diverged: the top edge
            if arm in chosen and chosen[arm].value is not None:
                axis.scatter(
                    [chosen[arm].trial.setting[key]],
                    [chosen[arm].value],
                    color=colour,
                    marker="*",
                    s=220,
                    edgecolors="black",
                )
            if tuning.spaces[arm][key].logarithmic:
                axis.set_xscale("log")
        if finite and min(finite) > 0 and max(finite) / min(finite) > 20:
            axis.set_yscale("log")  # a diverging trial's value would flatten the others
        axis.set_xlabel(key)
        axis.set_ylabel(metric)
        axis.grid(alpha=0.3)
    axes[0][0].legend(title="arm (★ selected, × diverged)", fontsize="small")
    figure.suptitle(f"{metric} of every trial")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
