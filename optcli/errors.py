"""The one exception type for problems the user can fix, and the one for a run that failed."""

from __future__ import annotations

from pathlib import Path

# A run's error when its config kept it from starting: it would fail the same way again.
COULD_NOT_START = "the run could not start"


# Exceptions an executor raises inside a run to cancel it (Ray's TaskCancelledError, which
# compare/running/ray_pool.py registers on the nodes it runs on): the run ends interrupted, not failed.
CANCELLATIONS: list[type[BaseException]] = []


class ConfigError(Exception):
    """A config or usage problem; carries every problem found, one line each (exit code 2)."""

    def __init__(self, problems: str | list[str], note: str = "") -> None:
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        self.note = note  # a line after the problems, about what was not checked yet
        super().__init__("\n".join(self.problems))

    def __str__(self) -> str:
        if len(self.problems) == 1:
            lines = [self.problems[0]]
        else:
            lines = [f"{len(self.problems)} problems:", *(f"  - {problem}" for problem in self.problems)]
        return "\n".join([*lines, self.note] if self.note else lines)


class TrainingFailed(Exception):
    """Training started but could not finish (exit code 1); the run directory keeps what was written."""

    def __init__(self, message: str, *, run_dir: Path | None = None, diverged: bool = False) -> None:
        super().__init__(message)
        self.run_dir = run_dir  # the run's directory, once known
        self.diverged = diverged  # the loss became non-finite: in a comparison, a result, not a failure


class Interrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM: the run stopped after a step and wrote a checkpoint to resume from (unless
    checkpoints are off)."""

    def __init__(self, run_dir: Path | None = None, resumable: bool = True) -> None:
        super().__init__()
        self.run_dir = run_dir  # where the run and its checkpoint are, once known
        self.resumable = resumable  # false with train.checkpoint: false (no checkpoint is written)


class PeerLost(TrainingFailed):
    """One of torchrun's workers whose peer died stopped because of it. The launcher names the rank
    that died, so this one says nothing of its own (its exit code tells the launcher it failed)."""

    def __init__(self, rank: int) -> None:
        super().__init__(f"rank {rank}: the group lost another process")


class ExportFailed(Exception):
    """A trained model that one export format cannot take (exit code 1); nothing was written."""
