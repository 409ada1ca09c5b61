"""matplotlib's pyplot, imported only where a figure is drawn (the import takes a quarter of a second),
with the Agg backend: optcli writes PNG files and needs no display."""

from __future__ import annotations

import threading
from typing import Any


def load_pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    return pyplot


def import_aside() -> None:
    """Start that import on a thread of its own (once), for a caller that only waits meanwhile
    (compare, for its last workers): `load_pyplot()` then finds it done, or waits for it to finish."""
    global _importing
    if _importing is None:
        _importing = threading.Thread(target=load_pyplot, name="optcli-import-matplotlib", daemon=True)
        _importing.start()


_importing: threading.Thread | None = None
