"""What a comparison leaves on disk: results.csv, summary.csv and summary.json, read from its runs.

The numbers come from each run's own files (epochs.csv, summary.json), so the report says exactly
what the run directories hold, whichever process trained them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from optcli.compare.judging.ranking import ArmSummary, RunResult
from optcli.compare.judging.targets import TRAINING_LOSS, Target
from optcli.compare.judging.verdict import Verdict
from optcli.compare.planning.plan import ComparisonPlan
from optcli.compare.running.jobs import Job, JobOutcome
from optcli.train.rundir import read_csv_rows, write_atomically
from optcli.train.sinks import format_number


@dataclass(frozen=True)
class ComparisonResult:
    """A comparison's outcome as reported: its folder, every run's result, the arms ranked, the verdict."""

    directory: Path
    results: list[RunResult]
    ranked: list[ArmSummary]
    verdict: Verdict
    status: Literal["completed", "interrupted"]


RESULTS_COLUMNS = (
    "arm",
    "seed",
    "status",
    "final_loss",
    "best_loss",
    "steps_to_target",
    "time_to_target_s",
    "train_time_s",
    "steps",
    "init_hash",
    "data_hash",
)
SUMMARY_COLUMNS = (
    "rank",
    "arm",
    "metric",
    "mean",
    "std",
    "min",
    "max",
    "seeds",
    "diverged",
    "failed",
    "interrupted",
    "mean_train_time_s",
)


def read_run_result(job: Job, outcome: JobOutcome, target: Target | None) -> RunResult:
    """One run's row of results.csv, from the files in its directory."""
    epochs = read_csv_rows(job.run_dir / "epochs.csv")
    try:
        summary: dict[str, Any] = json.loads((job.run_dir / "summary.json").read_text())
    except (OSError, ValueError):
        summary = {}
    losses = [float(row["train_loss"]) for row in epochs]
    reached = target.reached(job.run_dir) if target is not None and outcome.status == "ok" else (None, None)
    return RunResult(
        arm=job.arm,
        seed=job.seed,
        status=outcome.status,
        final_loss=losses[-1] if losses and outcome.status == "ok" else None,
        best_loss=summary.get("best_loss"),
        steps_to_target=reached[0],
        time_to_target_s=reached[1],
        train_time_s=summary.get("train_time_s"),
        steps=int(summary.get("steps") or 0),
        init_hash=summary.get("init_hash"),
        data_hash=summary.get("data_hash"),
        validation={
            **{metric: summary.get(f"final_{metric}") for metric in job.spec.validation_metrics},
            **{f"best_{metric}": summary.get(f"best_{metric}") for metric in job.spec.validation_metrics},
        },
        lr_changed=_lr_changed(job) if job.spec.scheduler is not None else None,
    )


def _lr_changed(job: Job) -> bool:
    """Whether the run's logged learning rate ever moved (a scheduler that never acted leaves it)."""
    return len({row["lr"] for row in read_csv_rows(job.run_dir / "metrics.csv")}) > 1


def write_results_csv(path: Path, results: list[RunResult], validation: tuple[str, ...]) -> None:
    """`validation`: the validation metrics every arm reports; each final value, then each best."""
    columns = RESULTS_COLUMNS + validation + tuple(f"best_{metric}" for metric in validation)
    rows = [",".join(columns)]
    for result in results:
        values = [
            getattr(result, column) if column in RESULTS_COLUMNS else result.validation.get(column)
            for column in columns
        ]
        rows.append(",".join(_cell(value) for value in values))
    write_atomically(path, "\n".join(rows) + "\n")


def write_summary_csv(path: Path, ranked: list[ArmSummary], metric: str) -> None:
    rows = [",".join(SUMMARY_COLUMNS)]
    for arm in ranked:
        values = [
            arm.rank,
            arm.arm,
            metric,
            arm.mean,
            arm.std,
            arm.low,
            arm.high,
            len(arm.values),
            arm.runs_diverged,
            arm.runs_failed,
            arm.runs_interrupted,
            arm.mean_train_time_s,
        ]
        rows.append(",".join(_cell(value) for value in values))
    write_atomically(path, "\n".join(rows) + "\n")


def write_summary_json(
    path: Path,
    plan: ComparisonPlan,
    ranked: list[ArmSummary],
    verdict: Verdict,
    results: list[RunResult],
    status: str,
) -> None:
    info = plan.metric_info
    document = {
        "name": plan.name,
        "status": status,
        "metric": plan.metric,
        "lower_is_better": info.lower_is_better,
        "target": plan.target.record() if plan.target is not None else None,
        "target_loss": plan.target.value
        if plan.target is not None and plan.target.metric == TRAINING_LOSS
        else None,
        "seeds": list(plan.seeds),
        "winner": verdict.winner,
        "runner_up": verdict.runner_up,
        "within_seed_noise": verdict.within_noise,
        "identical_to_runner_up": verdict.identical,
        "verdict": verdict.text,
        "arms": [
            {
                "rank": arm.rank,
                "arm": arm.arm,
                "mean": arm.mean,
                "std": arm.std,
                "min": arm.low,
                "max": arm.high,
                "values": list(arm.values),
                "runs": arm.runs,
                "diverged": arm.runs_diverged,
                "failed": arm.runs_failed,
                "interrupted": arm.runs_interrupted,
                "mean_train_time_s": arm.mean_train_time_s,
            }
            for arm in ranked
        ],
        "runs": [{"arm": r.arm, "seed": r.seed, "status": r.status} for r in results],
    }
    write_atomically(path, json.dumps(document, indent=2) + "\n")


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return format_number(value)
    return str(value)
