"""The one exception type for problems the user can fix, and the one for a run that failed."""

from __future__ import annotations


class ConfigError(Exception):
    """A config or usage problem; carries every problem found, one line each (exit code 2)."""

    def __init__(self, problems: str | list[str]) -> None:
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        super().__init__("\n".join(self.problems))

    def __str__(self) -> str:
        if len(self.problems) == 1:
            return self.problems[0]
        lines = [f"{len(self.problems)} problems:"]
        lines += [f"  - {problem}" for problem in self.problems]
        return "\n".join(lines)


class TrainingFailed(Exception):
    """Training started but could not finish (exit code 1); the run directory keeps what was written."""

    run_dir: object = None  # the run's directory (a Path), once known


class Interrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM: the run stopped after a step and wrote a checkpoint to resume from."""
