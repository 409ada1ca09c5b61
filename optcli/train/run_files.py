"""A finished run's files checked against its last checkpoint before anything reuses them (a
comparison's reports, `optcli mlflow-sync`), as `resume` checks them: its CSV files at least as long
as they were then, and its summary's values those the checkpoint recorded."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from optcli.errors import ConfigError

# What the reports read of a finished run's summary.json, and where its last checkpoint keeps the same.
_VOUCHED = ("final_loss", "best_loss", "best_epoch")


def shortened_csv_files(run_dir: Path, csv_sizes: dict[str, int]) -> list[tuple[Path, int | None, int]]:
    """The CSV files a checkpoint recorded that now hold fewer bytes than then, or are gone: each
    file, its size now (None: gone) and its size then. (A resumed run cuts them back to what the
    checkpoint says, and never pads them; a finished run's reports read them whole.)"""
    found = []
    for name, size in csv_sizes.items():
        path = run_dir / name
        now = path.stat().st_size if path.is_file() else None
        if now is None or now < size:
            found.append((path, now, size))
    return found


def check_run_files(run_dir: Path, summary: dict[str, Any]) -> None:
    """A ConfigError naming each edited file; a run without a checkpoint (train.checkpoint: false) has
    nothing to vouch for it."""
    from optcli.train.checkpoints import load_checkpoint

    path = run_dir / "checkpoints" / "last.pt"
    if not path.is_file():
        return
    checkpoint = load_checkpoint(path)
    problems = [
        f"{csv_path}: shorter than when its run ended, or gone (rows were lost)"
        for csv_path, _, _ in shortened_csv_files(run_dir, checkpoint["csv_sizes"])
    ]
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
