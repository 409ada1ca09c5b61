"""`optcli resume RUN_DIR`: continue a run in its own directory from checkpoints/last.pt, exactly."""

from __future__ import annotations

import copy
import dataclasses
import json
from pathlib import Path
from typing import Any

import torch

from optcli.config.loading import RawConfig, load_config
from optcli.config.resolve import resolve_config
from optcli.config.spec import RunSpec
from optcli.errors import ConfigError
from optcli.integrity import damage_in
from optcli.train.checkpoints import Checkpoint, DamagedCheckpoint, config_differences, load_checkpoint
from optcli.train.run import ResumePoint
from optcli.train.run_files import changed_csv_files, changed_since_written, shortened_csv_files


def prepare_resume(run_dir: Path, overrides: list[str], allow_changes: bool) -> tuple[RunSpec, ResumePoint]:
    """Check everything a resume needs before any training: the run, its checkpoint, its config."""
    if not run_dir.is_dir():
        raise ConfigError(f"{run_dir}: no such run directory")
    config_path = run_dir / "config.yaml"
    if not config_path.is_file():
        raise ConfigError(f"{run_dir}: not a run directory (it has no config.yaml)")
    try:
        status = json.loads((run_dir / "summary.json").read_text()).get("status")
    except (OSError, ValueError):
        status = None  # killed before its summary was written: resumable
    checkpoint, note = _trusted_checkpoint(run_dir / "checkpoints")
    spec = resolve_config(refilled(load_config(config_path, overrides), checkpoint.get("filled", [])))
    if status == "completed" and spec.total_steps <= checkpoint["loop"]["step"]:
        raise ConfigError(
            f"{run_dir}: the run has completed; there is nothing to resume. To extend it, resume with a "
            "longer run: --set train.epochs=N --allow-changes"
        )
    spec = _with_recorded_threads(spec, checkpoint)
    changes = config_differences(checkpoint["config"], spec.resolved) + _thread_change(spec, checkpoint)
    _check_schedule_length(spec, changes)
    _check_metrics(spec, checkpoint)
    if changes and not allow_changes:
        raise ConfigError(
            [
                "the config differs from the one the checkpoint was written with:",
                *changes,
                "resume with --allow-changes to continue with these changes (they are recorded in summary.json)",
            ]
        )
    _check_fits(spec, checkpoint)
    _check_files(run_dir, checkpoint)
    return spec, ResumePoint(checkpoint, changes, note)


# What a resumed run writes into, other than by replacing a whole file (which replaces a link itself).
WRITTEN_IN_PLACE = ("metrics.csv", "epochs.csv", "evals.csv", "checkpoints", "tensorboard")


def _check_files(run_dir: Path, checkpoint: Checkpoint) -> None:
    """The CSV files must hold at least what the checkpoint says they held (a resumed run cuts them back
    to that, and never pads them), and nothing a resumed run writes into may be a symbolic link (it
    would write through it, outside the run)."""
    problems = [
        f"{run_dir / name}: a symbolic link; optcli never writes through one (put the file itself there)"
        for name in WRITTEN_IN_PLACE
        if (run_dir / name).is_symlink()
    ]
    for path, now, size in shortened_csv_files(run_dir, checkpoint["csv_sizes"]):
        if path.is_symlink():
            continue  # (said above)
        if now is None:
            problems.append(
                f"{path}: missing; the checkpoint was written when it held {size} bytes of rows, which a "
                "resumed run would not have: restore the file, or start a new run"
            )
        else:
            problems.append(
                f"{path}: holds {now} bytes, fewer than the {size} it held when the "
                "checkpoint was written (rows before it were lost): restore the file, or start a new run"
            )
    problems += [
        f"{changed_since_written(path)}: restore the file, or start a new run"
        for path in changed_csv_files(run_dir, checkpoint)
    ]
    if problems:
        raise ConfigError(problems)


def _with_recorded_threads(spec: RunSpec, checkpoint: Checkpoint) -> RunSpec:
    """train.threads unset or auto: the resumed run uses the thread count the checkpoint was written
    with, so that its sums add up in the same order on any machine (and in a process whose count was
    changed)."""
    before = checkpoint.get("threads")
    if isinstance(spec.train.threads, int) or before is None:
        return spec
    return dataclasses.replace(spec, train=spec.train.model_copy(update={"threads": before}))


def _thread_change(spec: RunSpec, checkpoint: Checkpoint) -> list[str]:
    """On the CPU, torch's intra-op threads decide the order of a sum's terms: a resume with another
    count (train.threads set to another number) may differ from the uninterrupted run after a few
    steps. Said as a change, so that it needs --allow-changes."""
    before = checkpoint.get("threads")
    now = spec.train.threads
    if before is None or before == now or spec.device != "cpu":
        return []
    return [
        f"threads: {before} -> {now} (torch's intra-op threads: sums in another order, so the steps after the "
        f"resume may differ from the uninterrupted run's; --set train.threads={before} keeps them exact)"
    ]


def _trusted_checkpoint(directory: Path) -> tuple[Checkpoint, str]:
    """last.pt; when its bytes are not those written, best.pt (a point to resume from too, so the
    run still ends exactly as it would have), with a note saying so; else a ConfigError naming it."""
    try:
        checkpoint = load_checkpoint(directory / "last.pt")
    except DamagedCheckpoint as damaged:
        try:
            checkpoint = load_checkpoint(directory / "best.pt")
        except ConfigError:
            raise ConfigError(
                f"{damaged}; checkpoints/best.pt is missing or damaged too, so the run cannot be resumed"
            ) from None
        loop = checkpoint["loop"]
        return checkpoint, (
            f"{damaged}; resuming from checkpoints/best.pt instead (step {loop['step']}): the steps after "
            "it are trained again, and the run ends as it would have"
        )
    best = directory / "best.pt"
    damage = damage_in(best) if best.is_file() else None
    if damage is not None:
        # The best weights are lost; a resumed run would end "completed" without them, and evaluate,
        # predict and test_on: best would fail or judge other weights later.
        raise ConfigError(
            f"{best}: the checkpoint is damaged: {damage}; the best weights it held are lost. Delete it to "
            "resume anyway (best.pt is then written again at the next improvement)"
        )
    return checkpoint, ""


def refilled(raw: RawConfig, filled: list[str]) -> RawConfig:
    """The run's config without the run-length arguments optcli filled in, so that they are filled in
    again for the run's length now (a resume may change it: --set train.epochs=N)."""
    scheduler = raw.values.get("scheduler")
    if not filled or not isinstance(scheduler, dict):
        return raw
    scheduler = copy.deepcopy(scheduler)
    for dotted in filled:
        *path, key = dotted.split(".")
        node: Any = scheduler
        for part in path:
            node = node[int(part)] if isinstance(node, list) else node.get(part, {})
        if isinstance(node, dict):
            node.pop(key, None)
    return dataclasses.replace(raw, values={**raw.values, "scheduler": scheduler})


def _check_schedule_length(spec: RunSpec, changes: list[str]) -> None:
    """OneCycleLR plans its phases when it is built: a resume cannot stretch them."""
    if spec.scheduler is not None and any(change.startswith("scheduler.total_steps:") for change in changes):
        raise ConfigError(
            "scheduler.total_steps: OneCycleLR plans its whole cycle when it starts, so a resumed run cannot "
            "change its length; start a new run for a longer cycle"
        )


def _check_metrics(spec: RunSpec, checkpoint: Checkpoint) -> None:
    """The run's CSV files have a column per metric: a resume keeps them (other metrics: a new run)."""
    before, after = checkpoint["config"].get("metrics"), spec.resolved.get("metrics")
    if before is not None and before != after:
        raise ConfigError(
            "metrics: the run's epochs.csv has a column for each metric it was started with, "
            f"{before}; a resumed run reports the same ones. Start a new run for others (or evaluate this "
            "one's checkpoints with `optcli evaluate --set metrics=[...]`)"
        )


def _check_fits(spec: RunSpec, checkpoint: Checkpoint) -> None:
    """The checkpoint's states must fit the config's model, optimizer and scheduler (before any file
    of the run is touched)."""
    for section in ("optimizer", "scheduler"):
        before, after = checkpoint["config"].get(section), spec.resolved.get(section)
        if (before or {}).get("name") != (after or {}).get("name"):
            raise ConfigError(
                f"{section}.name: the checkpoint's state is for {(before or {}).get('name')}, the config names "
                f"{(after or {}).get('name')}; a resumed run keeps its {section}'s class"
            )
    try:
        # A plain-dict copy: load_state_dict(assign=True) records `assign` in the state dict's own
        # _metadata, which would make the real load later replace the parameters the optimizer holds.
        with torch.device("meta"):
            model = spec.model.build()
        model.load_state_dict(dict(checkpoint["model"]), assign=True)
    except RuntimeError as error:
        detail = " ".join(str(error).split())
        raise ConfigError(
            f"model: the checkpoint holds another model than the config describes: {detail}"
        ) from None
