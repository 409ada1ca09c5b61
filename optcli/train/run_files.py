"""A finished run's files checked against its last checkpoint before anything reuses them (a
comparison's reports, `optcli mlflow-sync`), as `resume` checks them: its CSV files at least as long
as they were then, and its summary's values those the checkpoint recorded."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from optcli.errors import ConfigError

# What the reports read of a finished run's summary.json, and where its last checkpoint keeps the same.
_VOUCHED = ("final_loss", "best_loss", "best_epoch")


def check_run_files(run_dir: Path, summary: dict[str, Any]) -> None:
    """A ConfigError naming each edited file; a run without a checkpoint (train.checkpoint: false) has
    nothing to vouch for it."""
    from optcli.train.checkpoints import load_checkpoint

    path = run_dir / "checkpoints" / "last.pt"
    if not path.is_file():
        return
    checkpoint = load_checkpoint(path)
    problems = []
    for name, size in checkpoint["csv_sizes"].items():
        csv_path = run_dir / name
        if not csv_path.is_file() or csv_path.stat().st_size < size:
            problems.append(f"{csv_path}: shorter than when its run ended, or gone (rows were lost)")
    recorded = checkpoint["summary"]
    vouched = {key: recorded.get(key) for key in _VOUCHED} | dict(recorded.get("validation") or {})
    edited = [key for key, value in vouched.items() if key in summary and not _same(summary[key], value)]
    if edited:
        problems.append(
            f"{run_dir / 'summary.json'}: {', '.join(edited)} differ from what the run's checkpoint recorded"
        )
    if problems:
        raise ConfigError(
            [
                *problems,
                f"what would be read from them cannot be trusted: restore them, or delete {run_dir} to run it again",
            ]
        )


def _same(found: Any, recorded: Any) -> bool:
    both_nan = (
        isinstance(found, float) and isinstance(recorded, float) and found != found and recorded != recorded
    )
    return bool(found == recorded or both_nan)
