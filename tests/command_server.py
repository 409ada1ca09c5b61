"""The tests' `python -m optcli` processes, forked from a process that has imported torch and optcli.

A command's first two seconds of CPU are its imports (torch, and torch._dynamo, which every torch.optim
step imports), and the slow lane starts dozens of commands to kill, interrupt and resume them (the whole
suite took 378 s with each a fresh interpreter, 344 s with them forked, on 2 cores). This server, one per test worker, pays the imports once and forks a
child per command, as compare's own fork server does for its workers (optcli/workers/preload.py).

Each child is a real process that the test signals, kills and waits for like any other: a session of its
own (a terminal's Ctrl-C to its group reaches its DataLoader workers and torchrun's workers too), the
test's pipes as its standard output and error, the test's environment, folder and arguments, SIGINT and
SIGHUP as a terminal starts a command. It runs `python -m optcli` (runpy, as `-m` does), and leaves at
the end of this module as a script does, through the interpreter's own exit: its atexit handlers,
flushed files and exit status are those of a command started from a shell. What it cannot have is a
start-up of its own, so the tests of the start-up itself (Ctrl-C while torch is imported, torch's import
without collections, a config checked without importing torch) keep starting fresh interpreters.

The protocol, over a Unix socket the test worker holds: each request is a JSON message (args, env, cwd)
with three descriptors (the child's stdout and stderr, and a socket of the command's own); the server
writes the child's pid to that socket, then its exit status (as subprocess gives it: negative for a
signal) when it ends. The server leaves when the test worker closes its end.
"""

from __future__ import annotations

import atexit
import contextlib
import io
import json
import os
import select
import selectors
import signal
import socket
import subprocess
import sys
import time
from typing import Any

MAX_REQUEST = 1 << 20
# The signals a terminal leaves at their defaults for a command it starts, which nohup or a shell's
# background leave ignored instead (and an ignored signal stays ignored across exec: optcli's, and its
# torchrun workers').
TERMINAL_SIGNALS = (signal.SIGINT, signal.SIGHUP, signal.SIGTERM, signal.SIGQUIT)
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class ForkedCommand:
    """What the test holds of a forked command: subprocess.Popen's pid, poll, wait, communicate
    (text), send_signal, kill, terminate and returncode."""

    def __init__(self, args: list[str], pid: int, stdout: int, stderr: int, report: socket.socket) -> None:
        self.args, self.pid, self.returncode = args, pid, None
        self._report = report
        self._output: dict[int, list[bytes]] = {stdout: [], stderr: []}
        self._open = [stdout, stderr]
        self._status = b""
        for fd in self._open:
            os.set_blocking(fd, False)

    def poll(self) -> int | None:
        self._gather(0)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.returncode is None:
            self._gather(None if deadline is None else max(0.0, deadline - time.monotonic()))
            if self.returncode is None and deadline is not None and time.monotonic() >= deadline:
                raise subprocess.TimeoutExpired(self.args, timeout)  # type: ignore[arg-type]
        return self.returncode

    def communicate(self, timeout: float | None = None) -> tuple[str, str]:
        deadline = None if timeout is None else time.monotonic() + timeout
        while self._open or self.returncode is None:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                raise subprocess.TimeoutExpired(self.args, timeout)  # type: ignore[arg-type]
            self._gather(left, pipes=True)
        stdout, stderr = (b"".join(chunks) for chunks in self._output.values())
        return _text(stdout), _text(stderr)

    def send_signal(self, signum: int) -> None:
        if self.poll() is None:
            os.kill(self.pid, signum)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def _gather(self, timeout: float | None, pipes: bool = False) -> None:
        """Whatever has arrived within `timeout`: the exit status, and with `pipes` the output."""
        watched: list[Any] = [self._report] if self.returncode is None else []
        if pipes:
            watched += self._open
        if not watched:
            return
        ready, _, _ = select.select(watched, [], [], timeout)
        for source in ready:
            if source is self._report:
                data = self._report.recv(64)
                self._status += data
                if not data or self._status.endswith(b"\n"):
                    self.returncode = int(self._status)
                    self._report.close()
                continue
            data = os.read(source, 1 << 16)
            if data:
                self._output[source].append(data)
            else:
                os.close(source)
                self._open.remove(source)

    def __del__(self) -> None:
        for fd in self._open:
            os.close(fd)


def _text(data: bytes) -> str:
    return io.TextIOWrapper(io.BytesIO(data)).read()  # as Popen(text=True) reads: universal newlines


class CommandServer:
    """The test worker's side: the server started at the first command, ended with the worker."""

    def __init__(self) -> None:
        self._process: subprocess.Popen[bytes] | None = None
        self._control: socket.socket | None = None

    def start(self, args: list[str], env: dict[str, str], cwd: str) -> ForkedCommand:
        if self._process is None:
            self._launch()
        assert self._control is not None
        out_read, out_write = os.pipe()
        err_read, err_write = os.pipe()
        mine, theirs = socket.socketpair()
        request = json.dumps({"args": args, "env": env, "cwd": cwd}).encode()
        socket.send_fds(self._control, [request], [out_write, err_write, theirs.fileno()])
        for fd in (out_write, err_write):
            os.close(fd)
        theirs.close()
        pid = b""
        while not pid.endswith(b"\n"):
            data = mine.recv(64)
            assert data, "the command server has ended"
            pid += data
        return ForkedCommand(["optcli", *args], int(pid), out_read, err_read, mine)

    def _launch(self) -> None:
        self._control, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self._process = subprocess.Popen(
            [sys.executable, "-m", "tests.command_server", str(theirs.fileno())],
            pass_fds=[theirs.fileno()],
            cwd=REPO,
            env={**os.environ, "PYTHONPATH": REPO},
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        theirs.close()
        atexit.register(self.close)

    def close(self) -> None:
        if self._process is not None and self._control is not None:
            self._control.close()
            self._process.wait(timeout=30)


def serve(control: socket.socket) -> dict[str, Any] | None:
    """Fork a child per request; in the child, return its request (the parent returns None at the
    end). Single-threaded, as forking needs."""
    from optcli.process.torch_import import import_torch

    import_torch()
    import optcli.cli
    import optcli.compare.running.jobs
    import optcli.train.run  # noqa: F401

    wakeup_reader, wakeup_writer = socket.socketpair()
    wakeup_writer.setblocking(False)
    signal.set_wakeup_fd(wakeup_writer.fileno())
    signal.signal(signal.SIGCHLD, lambda signum, frame: None)  # (the wakeup fd is what tells)
    selector = selectors.DefaultSelector()
    selector.register(control, selectors.EVENT_READ)
    selector.register(wakeup_reader, selectors.EVENT_READ)
    reports: dict[int, socket.socket] = {}
    while True:
        for key, _ in selector.select():
            if key.fileobj is wakeup_reader:
                wakeup_reader.recv(4096)
                _report_ended(reports)
                continue
            message, fds, _, _ = socket.recv_fds(control, MAX_REQUEST, 3)
            if not message:
                return None  # the test worker has gone
            request = json.loads(message)
            pid = os.fork()
            if pid == 0:
                signal.set_wakeup_fd(-1)
                signal.signal(signal.SIGCHLD, signal.SIG_DFL)
                selector.close()
                for sock in (control, wakeup_reader, wakeup_writer, *reports.values()):
                    sock.close()
                _become_the_command(request, fds)
                return request
            stdout, stderr, report = fds
            os.close(stdout)
            os.close(stderr)
            reports[pid] = socket.socket(fileno=report)
            reports[pid].sendall(f"{pid}\n".encode())
            _report_ended(reports)  # (one that ended before it was registered)


def _report_ended(reports: dict[int, socket.socket]) -> None:
    while reports:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        report = reports.pop(pid, None)
        if report is not None:
            with contextlib.suppress(OSError):  # (the test may have stopped listening)
                report.sendall(f"{os.waitstatus_to_exitcode(status)}\n".encode())
            report.close()


def signals_as_a_terminal_leaves_them() -> None:
    """For a command the tests start: each of TERMINAL_SIGNALS at its default."""
    for signum in TERMINAL_SIGNALS:
        signal.signal(signum, signal.SIG_DFL)


def _become_the_command(request: dict[str, Any], fds: list[int]) -> None:
    stdout, stderr, report = fds
    os.close(report)
    os.setsid()
    null = os.open(os.devnull, os.O_RDONLY)
    for source, target in ((null, 0), (stdout, 1), (stderr, 2)):
        os.dup2(source, target)
        os.close(source)
    signals_as_a_terminal_leaves_them()
    signal.signal(signal.SIGINT, signal.default_int_handler)  # (as Python's own start-up then sets it)
    os.environ.clear()
    os.environ.update(request["env"])
    os.chdir(request["cwd"])
    sys.argv = ["optcli", *request["args"]]


def main() -> None:
    control = socket.socket(fileno=int(sys.argv[1]))
    request = serve(control)
    if request is None:
        return
    import runpy

    # As `python -m optcli` runs it; an exception or SystemExit leaves as from any script.
    sys.path[0] = os.getcwd()
    runpy.run_module("optcli", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
