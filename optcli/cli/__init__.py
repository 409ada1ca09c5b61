"""The `optcli` command: a thin shell that parses arguments, calls the library and shows results.

Nothing heavy is imported at the top, so `optcli --help` is quick (torch loads only when a command
needs it). Each command module registers its commands on the one app.
"""

import gc

from optcli.cli import comparing, runs, using  # noqa: F401  (registers the commands)
from optcli.cli.shared import app


def main() -> None:
    try:
        app()
    finally:
        # Python's last collections at exit walk every object torch has imported (well over a
        # million): half a second after every command. Frozen objects are left out of them; exit
        # handlers still run and files still flush and close as usual.
        gc.freeze()


__all__ = ["app", "main"]
