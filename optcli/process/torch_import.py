"""Importing torch at the start of a command or a worker: a second and a half of every process's
start-up, which two things shorten or make safe.

- Python's collector is paused meanwhile. The import makes some 280,000 objects, and the collector
  would walk all of them several times over (a third of a second on the development machine, a
  quarter of the import). Then they are frozen, so that later collections leave them alone too. The
  few thousand objects of garbage the import leaves (a few MB) stay for the life of the process.
- Ctrl-C is held until the import is done (`import_torch`): an interrupt in the middle of torch's C
  start-up could leave it half imported (a later import fails), or Python set to end the process by
  SIGINT instead of exit 130.

torch._dynamo is imported with torch: every torch.optim optimizer's step imports it.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator

from optcli.process.interrupts import ctrl_c_held


def import_torch() -> None:
    """torch and torch._dynamo, quickly, with Ctrl-C held until both are in."""
    with ctrl_c_held(), collections_paused():
        import torch._dynamo  # noqa: F401


@contextlib.contextmanager
def collections_paused() -> Iterator[None]:
    """No garbage collection inside; the objects made meanwhile are frozen on the way out."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        if was_enabled:
            gc.enable()
