"""The `optcli` command: a thin shell that parses arguments, calls the library and shows results.

Nothing heavy is imported at the top, so `optcli --help` is quick (torch loads only when a command
needs it). Each command module registers its commands on the one app.
"""

from optcli.cli import comparing, runs  # noqa: F401  (registers the commands)
from optcli.cli.shared import app


def main() -> None:
    app()


__all__ = ["app", "main"]
