"""The `optcli` command: a thin shell that parses arguments, calls the library and shows results.

Nothing heavy is imported at the top, so `optcli --help` is quick (torch loads only when a command
needs it). Each command module registers its commands on the one app.
"""

import gc
import os
import sys

# Each module registers its commands; `optcli --help` lists them in this order: training a run,
# using one, then comparing runs.
# isort: off
from optcli.cli import runs  # noqa: F401
from optcli.cli import using  # noqa: F401
from optcli.cli import comparing  # noqa: F401

# isort: on
from optcli.cli.shared import app


def main() -> None:
    try:
        app()
    except SystemExit as finished:
        _end_a_worker_at_once(finished.code)
        raise
    finally:
        # Python's last collections at exit walk every object torch has imported (well over a
        # million): half a second after every command. Frozen objects are left out of them; exit
        # handlers still run and files still flush and close as usual.
        gc.freeze()


def _end_a_worker_at_once(code: object) -> None:
    """One of torchrun's workers ends here, its files closed and its process group left, without the
    interpreter's teardown, which can hang it (train/distributed.py: joined_a_group)."""
    distributed = sys.modules.get("optcli.train.distributed")
    if distributed is not None and distributed.joined_a_group():
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code if isinstance(code, int) else 0 if code is None else 1)


__all__ = ["app", "main"]
