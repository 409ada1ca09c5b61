"""Ctrl-C and SIGTERM during training: finish the current step, checkpoint, then stop.

The first signal only sets a flag that the loop reads after each step; a second Ctrl-C raises
KeyboardInterrupt at once, for a user who will not wait. A signal that the process ignores (as
compare's workers ignore the terminal's Ctrl-C, which their parent handles) stays ignored.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from types import FrameType
from typing import Any


class StopRequests:
    def __init__(self) -> None:
        self.requested = False

    def __call__(self) -> bool:
        return self.requested

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.requested and signum == signal.SIGINT:
            raise KeyboardInterrupt  # a second Ctrl-C: stop now
        self.requested = True

    @contextlib.contextmanager
    def installed(self) -> Iterator[StopRequests]:
        """Handle SIGINT and SIGTERM while inside; the previous handlers come back afterwards."""
        if threading.current_thread() is not threading.main_thread():
            yield self  # signals reach only the main thread; nothing to install
            return
        previous: dict[int, Any] = {}
        signals: tuple[int, ...] = (signal.SIGINT, signal.SIGTERM)
        for signum in signals:
            if signal.getsignal(signum) is not signal.SIG_IGN:
                previous[signum] = signal.signal(signum, self._handle)
        try:
            yield self
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
