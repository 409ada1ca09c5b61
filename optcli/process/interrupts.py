"""Ctrl-C, SIGTERM and SIGHUP (a closed terminal or SSH session) during training: finish the current
step, checkpoint, then stop. Other commands (compare) take SIGTERM and SIGHUP as Ctrl-C. Before a
command has begun (Python importing it) and after it has ended, a stop signal ends the process at
once, saying so, with exit 130 (`leave_on_stop_signals`): nothing is being written then.

The first signal only sets a flag that the loop reads after each step; a second one raises
KeyboardInterrupt at once, for a user (or a scheduler's second SIGTERM) that will not wait. A signal that the process ignores (as
compare's workers ignore the terminal's Ctrl-C, which their parent handles) stays ignored.

`signal_held` (`ctrl_c_held` for every stop signal) is for work that a signal must not cut in two (a
message read from or written to a pipe, an import): the signal takes effect when it is done.
`signal_handled_by` is the one place that swaps a handler in and back out.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from collections.abc import Iterable, Iterator
from types import FrameType
from typing import Any

# The signals that ask a command to stop: Ctrl-C, a kill or a scheduler's, a closed terminal.
STOP_SIGNALS = tuple(
    getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name)
)


class StopRequests:
    def __init__(self) -> None:
        self.requested = False

    def __call__(self) -> bool:
        return self.requested

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.requested:
            raise KeyboardInterrupt  # a second one: stop now
        self.requested = True

    @contextlib.contextmanager
    def installed(self) -> Iterator[StopRequests]:
        """Handle the stop signals while inside; the previous handlers come back afterwards."""
        with _handled(self._handle):
            yield self


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def stop_signals_as_ctrl_c() -> contextlib.AbstractContextManager[None]:
    """SIGTERM and SIGHUP stop the command as Ctrl-C does (a KeyboardInterrupt in the main thread),
    so that what was done is saved and reported before it exits."""
    return _handled(_interrupt)


EXIT_INTERRUPTED = 130


def _leave(signum: int, frame: FrameType | None) -> None:
    with contextlib.suppress(Exception):  # (what was printed goes out first: stdout may be a pipe)
        sys.stdout.flush()
        print("interrupted", file=sys.stderr, flush=True)
    os._exit(EXIT_INTERRUPTED)


def leave_on_stop_signals() -> None:
    """The optcli command's first instruction: until a command takes the stop signals over (and once
    it has given them back), each ends the process at once with exit 130, not with the default
    action's silent death (SIGTERM, SIGHUP) or an import's traceback (Ctrl-C). A signal the process
    ignores (under nohup, or started in a shell's background) stays ignored."""
    for signum in STOP_SIGNALS:
        if signal.getsignal(signum) is not signal.SIG_IGN:
            signal.signal(signum, _leave)


@contextlib.contextmanager
def _handled(handler: Any, signals: Iterable[int] = STOP_SIGNALS) -> Iterator[None]:
    """`handler` for each of `signals` that the process does not ignore (compare's workers ignore the
    terminal's Ctrl-C, which their parent handles)."""
    with contextlib.ExitStack() as handlers:
        for signum in signals:
            if signal.getsignal(signum) is not signal.SIG_IGN:
                handlers.enter_context(signal_handled_by(signum, handler))
        yield


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


@contextlib.contextmanager
def ctrl_c_held() -> Iterator[None]:
    """Every stop signal (a terminal's Ctrl-C, SIGTERM, SIGHUP) held meanwhile: see `signal_held`."""
    with contextlib.ExitStack() as held:
        for signum in STOP_SIGNALS:
            held.enter_context(signal_held(signum))
        yield
