"""`optcli compare --resume DIR`: a comparison goes on where it stopped. What it was asked is kept in
`comparison.json` when it starts; on resume, finished runs are kept, runs with a checkpoint resume
from it, and the others start afresh; the reports are then written as if nothing had happened."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from optcli.compare.jobs import Job, JobOutcome
from optcli.compare.plan import CommandLine
from optcli.errors import ConfigError

INVOCATION = "comparison.json"


def save_invocation(directory: Path, paths: list[Path], command_line: CommandLine) -> None:
    from optcli.train.rundir import write_atomically

    values: dict[str, Any] = asdict(command_line)
    values["output_dir"] = str(directory.parent.parent)  # <out>/compare-<name>/<timestamp>
    document = {"files": [str(path.resolve()) for path in paths], "command_line": values}
    write_atomically(directory / INVOCATION, json.dumps(document, indent=2) + "\n")


def load_invocation(directory: Path) -> tuple[list[Path], CommandLine]:
    """The files and options a comparison was started with."""
    try:
        document = json.loads((directory / INVOCATION).read_text())
    except (OSError, ValueError):
        raise ConfigError(
            f"{directory}: not a comparison optcli can resume (it has no readable {INVOCATION})"
        ) from None
    values = document["command_line"]
    values["output_dir"] = Path(values["output_dir"]) if values.get("output_dir") else None
    return [Path(path) for path in document["files"]], CommandLine(**values)


def finished(job: Job) -> JobOutcome | None:
    """The outcome of a run that ended on its own (completed, diverged or failed), from its summary;
    None for one to run: missing, interrupted, or killed before it could say."""
    try:
        summary = json.loads((job.run_dir / "summary.json").read_text())
    except (OSError, ValueError):
        return None
    if summary.get("status") == "completed":
        return JobOutcome(job.index, "ok")
    if summary.get("status") == "failed" and "diverged" in summary:
        return JobOutcome(job.index, "diverged" if summary["diverged"] else "failed", summary.get("error"))
    return None
