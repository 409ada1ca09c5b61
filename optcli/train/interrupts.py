"""Ctrl-C and SIGTERM during training: finish the current step, checkpoint, then stop.

The first signal only sets a flag that the loop reads after each step; a second Ctrl-C raises
KeyboardInterrupt at once, for a user who will not wait. A signal that the process ignores (as
compare's workers ignore the terminal's Ctrl-C, which their parent handles) stays ignored.

`ctrl_c_held` is for work that an interrupt must not cut in two (a message read from a pipe, an
import): the Ctrl-C takes effect when it is done.
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


@contextlib.contextmanager
def ctrl_c_held() -> Iterator[None]:
    """A Ctrl-C that comes inside is held, and handled as usual on the way out (by the handler there
    was before: a KeyboardInterrupt by default). Only the main thread, which signals reach, holds."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: received.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if received:
            signal.raise_signal(signal.SIGINT)
