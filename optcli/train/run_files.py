"""A finished run's files checked against its last checkpoint before anything reuses them (a
comparison's reports, `optcli mlflow-sync`), as `resume` checks them: its CSV files at least as long
as they were then and their bytes up to there those the run wrote, and its summary's values those the
checkpoint recorded."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from optcli.errors import ConfigError

if TYPE_CHECKING:
    from optcli.train.checkpoints import Checkpoint

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


def changed_csv_files(run_dir: Path, checkpoint: Checkpoint) -> list[Path]:
    """The CSV files whose bytes up to the checkpoint's size are no longer those the run wrote (edited,
    or damaged on disk). Files gone or shorter are shortened_csv_files'."""
    from optcli.train.sinks.csv_files import prefix_sha256

    changed = []
    for name, digest in checkpoint.get("csv_sha256", {}).items():
        path, size = run_dir / name, checkpoint["csv_sizes"][name]
        if path.is_file() and path.stat().st_size >= size and prefix_sha256(path, size).hexdigest() != digest:
            changed.append(path)
    return changed


def changed_since_written(path: Path) -> str:
    return f"{path}: its rows are not those the run wrote (the file was edited or damaged since)"


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
    problems += [changed_since_written(path) for path in changed_csv_files(run_dir, checkpoint)]
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
