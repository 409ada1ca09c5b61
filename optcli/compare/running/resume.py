"""`optcli compare --resume DIR`: a comparison goes on where it stopped. What it was asked, and what
each of its runs computes (a hash of each run's resolved config), is kept in `comparison.json` when
it starts. On resume the files are read again: a run whose config changed meanwhile (an edited
compare file or base) is an error naming its arm, unless `--allow-changes` reruns every run of the
changed arms from scratch. Runs that ended on their own are kept (completed or diverged, or failed
for a cause in the config); the others, failed ones included (a full disk, a damaged file), resume
from their checkpoint or start afresh. The reports are then written as if nothing had happened."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from optcli.compare.planning.plan import CommandLine
from optcli.compare.running.jobs import Job, JobOutcome
from optcli.config.schema import describe_errors
from optcli.config.spec import NOT_COMPUTED, NOT_COMPUTED_BEFORE, hash_resolved
from optcli.errors import COULD_NOT_START, ConfigError
from optcli.train.run_files import check_run_files

INVOCATION = "comparison.json"


class _InvocationRecord(BaseModel):
    """comparison.json: the files and options the comparison was started with, and each run's config
    hash by its folder name (absent in comparisons started by an older optcli)."""

    model_config = ConfigDict(extra="forbid", strict=True)
    files: list[str]
    command_line: CommandLine
    runs: dict[str, str] | None = None
    # What the runs' hashes cover: "computation" (config/spec.py's NOT_COMPUTED left out); absent in
    # comparisons whose hashes left out only the output and the thread count.
    hashes: Literal["computation"] | None = None
    # The SHA-256 of the rest, as written: an edited record (a seed added, a run's hash deleted, the
    # files pointed elsewhere) is refused instead of resumed from (absent in older comparisons).
    digest: str | None = None


def _digest(document: dict[str, Any]) -> str:
    content = {key: value for key, value in document.items() if key != "digest"}
    return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()


def save_invocation(
    directory: Path, paths: list[Path], command_line: CommandLine, jobs: list[Job] | None = None
) -> None:
    from optcli.train.rundir import write_atomically

    values = command_line.model_dump(mode="json")
    values["output_dir"] = str(directory.parent.parent)  # <out>/compare-<name>/<timestamp>
    document: dict[str, Any] = {"files": [str(path.resolve()) for path in paths], "command_line": values}
    if jobs is not None:
        document["runs"], document["hashes"] = run_hashes(directory, jobs), "computation"
    document["digest"] = _digest(document)
    write_atomically(directory / INVOCATION, json.dumps(document, indent=2) + "\n")


def run_hashes(directory: Path, jobs: list[Job]) -> dict[str, str]:
    """Each run's folder (relative to the comparison) and the hash of what it computes."""
    return {str(job.run_dir.relative_to(directory)): job.spec.config_hash for job in jobs}


def _read_record(directory: Path) -> _InvocationRecord:
    path = directory / INVOCATION
    try:
        document = json.loads(path.read_text())
    except (OSError, ValueError):
        raise ConfigError(
            f"{directory}: not a comparison optcli can resume (it has no readable {INVOCATION})"
        ) from None
    try:
        record = _InvocationRecord.model_validate(document)
    except ValidationError as error:
        raise ConfigError([f"{path}: {line}" for line in describe_errors(error, _InvocationRecord)]) from None
    if record.digest is not None and record.digest != _digest(document):
        raise ConfigError(
            f"{path}: edited since the comparison wrote it (its digest no longer matches): what it says was "
            "asked and run cannot be trusted; restore it, or start a new comparison"
        )
    return record


def load_invocation(directory: Path) -> tuple[list[Path], CommandLine]:
    """The files and options a comparison was started with."""
    record = _read_record(directory)
    return [Path(path) for path in record.files], record.command_line


def check_unchanged(directory: Path, paths: list[Path], jobs: list[Job], allow_changes: bool) -> None:
    """Every run that has started computes what the comparison recorded for it; with `allow_changes`,
    the runs of an arm that changed are removed (to run again from scratch) and the record updated."""
    record = _read_record(directory)
    if record.runs is None:
        return  # started by an optcli that kept no hashes: nothing to check against
    left_out = NOT_COMPUTED if record.hashes == "computation" else NOT_COMPUTED_BEFORE
    changed = [
        job
        for job in jobs
        # A run not started yet counts too: the record must say what will be run.
        if record.runs.get(str(job.run_dir.relative_to(directory)))
        != (now := hash_resolved(job.spec.resolved, left_out))
        or _run_computes(job, left_out) not in (None, now)
    ]
    if not changed:
        return
    arms = sorted({job.arm for job in changed})
    if not allow_changes:
        raise ConfigError(
            [
                *(f"arm '{arm}': {_what_changed(arm, changed)}" for arm in arms),
                "their runs so far would mix two configs; resume with --allow-changes to run every run of "
                "the changed arms again from scratch",
            ]
        )
    for job in jobs:
        if job.arm in arms and job.run_dir.exists():
            shutil.rmtree(job.run_dir)
    _, command_line = load_invocation(directory)
    save_invocation(directory, paths, command_line, jobs)


def _run_computes(job: Job, left_out: dict[str, tuple[str, ...]]) -> str | None:
    """The config hash of what a started run computes, as its own last checkpoint (whose bytes are
    checked) records it; None for a run with no checkpoint to vouch."""
    from optcli.train.checkpoints import load_checkpoint

    path = job.run_dir / "checkpoints" / "last.pt"
    if not path.is_file():
        return None
    try:
        return hash_resolved(load_checkpoint(path)["config"], left_out)
    except ConfigError:
        return None  # damaged: the run resumes from best.pt or starts afresh, as a resume decides


def _what_changed(arm: str, changed: list[Job]) -> str:
    """The differences between a run's recorded config.yaml and the arm's config now."""
    import yaml

    from optcli.train.checkpoints import config_differences

    job = next(job for job in changed if job.arm == arm)
    try:
        before = yaml.safe_load((job.run_dir / "config.yaml").read_text())
        differences = config_differences(before, job.spec.resolved)
    except (OSError, yaml.YAMLError, AttributeError):
        differences = []  # (not started yet: the record's hash is all there is)
    shown = "; ".join(differences[:5]) or "its resolved config, against the hash the comparison recorded"
    return f"the config changed since the comparison started ({shown})"


def finished(job: Job) -> JobOutcome | None:
    """The outcome of a run that ended on its own and would end the same way again (completed,
    diverged, or failed because of its config), from its summary; None for one to run: missing,
    interrupted, killed before it could say, or failed for a cause outside the config."""
    try:
        summary = json.loads((job.run_dir / "summary.json").read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(summary, dict):
        return None
    if summary.get("status") == "completed":
        check_run_files(job.run_dir, summary)
        return JobOutcome(job.index, "ok")
    if summary.get("status") == "failed" and summary.get("diverged"):
        return JobOutcome(job.index, "diverged", summary.get("error"))
    if summary.get("status") == "failed" and summary.get("error") == COULD_NOT_START:
        return JobOutcome(job.index, "failed", summary.get("error"))
    return None
