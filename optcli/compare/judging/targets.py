"""A comparison's target: a training loss (`target_loss`, checked at every epoch's end) or a validation
metric (`target: {val_accuracy: 0.97}`, checked at every evaluation: every `train.eval_every` steps
and at every epoch's end), and when a run first reached it, in optimizer steps and training seconds,
read from the run's own epochs.csv and evals.csv."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from optcli.config.metrics import better_direction
from optcli.errors import ConfigError
from optcli.name_matching import did_you_mean
from optcli.train.rundir import read_csv_rows

TRAINING_LOSS = "loss"  # target_loss: the epoch's mean training loss


@dataclass(frozen=True)
class Target:
    metric: str  # "loss" (the training loss) or a validation metric
    value: float
    # Settled from the runs' own metrics when the plan is checked; until then a built-in's (by name).
    lower_is_better: bool | None = None

    def __post_init__(self) -> None:
        if self.lower_is_better is None:
            object.__setattr__(self, "lower_is_better", better_direction(self.metric) == "min")

    def words(self) -> str:
        """'the target loss 0.5', 'the target val_accuracy 0.97'."""
        return f"the target {self.metric} {self.value:g}"

    def met_by(self, value: float) -> bool:
        return value <= self.value if self.lower_is_better else value >= self.value

    def record(self) -> dict[str, float]:
        return {self.metric: self.value}

    def reached(self, run_dir: Path) -> tuple[int | None, float | None]:
        """The optimizer step and training seconds of the first check that met the target, or
        (None, None) when no check did."""
        column = "train_loss" if self.metric == TRAINING_LOSS else self.metric
        checks = read_csv_rows(run_dir / "epochs.csv")
        if self.metric != TRAINING_LOSS:  # evaluations within epochs too, in step order
            checks = sorted(checks + read_csv_rows(run_dir / "evals.csv"), key=lambda row: int(row["step"]))
        for row in checks:
            if row.get(column) not in (None, "") and self.met_by(float(row[column])):
                return int(row["step"]), float(row["elapsed_s"])
        return None, None


def read_target(given: Any, target_loss: float | None, where: str) -> Target | None:
    """A compare file's (or a workload's) `target:` mapping of one metric to its value, or the
    `target_loss` of old; a ConfigError naming `where` when it is neither."""
    if given is None:
        return Target(TRAINING_LOSS, target_loss) if target_loss is not None else None
    if target_loss is not None:
        raise ConfigError(f"{where}: give target: or target_loss:, not both")
    if not isinstance(given, dict) or len(given) != 1:
        raise ConfigError(f"{where}: one metric and the value to reach, e.g. {{val_accuracy: 0.97}}")
    ((metric, value),) = given.items()
    # (Which validation metrics the runs report is known once their configs are checked.)
    if metric != TRAINING_LOSS and not (isinstance(metric, str) and metric.startswith("val_")):
        metrics = (TRAINING_LOSS, "val_loss", "val_accuracy", "val_...")
        raise ConfigError(
            f"{where}: '{metric}' is not a metric a target can be on{did_you_mean(str(metric), metrics)}; "
            f"the training loss (loss) or a validation metric the runs report (val_loss, val_f1_macro, ...)"
        )
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"{where}.{metric}: a number, got {value!r}")
    return Target(str(metric), float(value))
