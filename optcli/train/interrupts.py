"""Ctrl-C and SIGTERM during training: finish the current step, checkpoint, then stop.

The first signal only sets a flag that the loop reads after each step; a second Ctrl-C raises
KeyboardInterrupt at once, for a user who will not wait. A signal that the process ignores (as
compare's workers ignore the terminal's Ctrl-C, which their parent handles) stays ignored.

`signal_held` (`ctrl_c_held` for SIGINT) is for work that a signal must not cut in two (a message
read from or written to a pipe, an import): the signal takes effect when it is done.
`signal_handled_by` is the one place that swaps a handler in and back out.
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
        with contextlib.ExitStack() as handlers:
            for signum in (signal.SIGINT, signal.SIGTERM):
                if signal.getsignal(signum) is not signal.SIG_IGN:
                    handlers.enter_context(signal_handled_by(signum, self._handle))
            yield self


@contextlib.contextmanager
def signal_handled_by(signum: int, handler: Any) -> Iterator[None]:
    """`handler` (a function, or signal.SIG_IGN) for `signum` while inside; the previous one back on
    the way out. Only in the main thread: signals reach no other, and only it may set handlers."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signum, handler)
    try:
        yield
    finally:
        signal.signal(signum, previous)


@contextlib.contextmanager
def signal_held(signum: int) -> Iterator[None]:
    """A `signum` that comes inside is held, and handled as usual on the way out, by the handler there
    was before (for SIGINT by default a KeyboardInterrupt)."""
    received: list[int] = []
    try:
        with signal_handled_by(signum, lambda number, frame: received.append(number)):
            yield
    finally:
        if received:
            signal.raise_signal(signum)


def ctrl_c_held() -> contextlib.AbstractContextManager[None]:
    """SIGINT (a terminal's Ctrl-C) held meanwhile: see `signal_held`."""
    return signal_held(signal.SIGINT)
