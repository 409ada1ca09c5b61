"""Helpers for running optcli the way a user does: a config file on disk, the CLI, the files it writes."""

from __future__ import annotations

import contextlib
import csv
import functools
import json
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
import typer.testing
import yaml
from hypothesis import settings
from typer.testing import CliRunner, Result

from optcli.cli import app
from tests.command_server import CommandServer, ForkedCommand, signals_as_a_terminal_leaves_them

REPO = Path(__file__).resolve().parent.parent
COMMANDS = CommandServer()
# A command a test started: forked by the command server, or a fresh interpreter (start_optcli).
Command = ForkedCommand | subprocess.Popen[str]

# Text data's token files go to a cache of the test session's own, not the user's ~/.cache.
os.environ.setdefault("OPTCLI_CACHE", tempfile.mkdtemp(prefix="optcli-cache-"))

# Ray, wherever a test starts or joins an instance: on the loopback interface alone (Ray's switch for
# a cluster of one machine: without it Ray rewrites 127.0.0.1 to the machine's own address, where it
# binds), with a token of the test session's own rather than the user's ~/.ray/auth_token. Set before
# any Ray is started here: a process keeps the token it first read.
os.environ.update(
    RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0", RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=secrets.token_hex(16)
)

# In CI the property tests draw the same examples every run, so that a landing never hangs on luck;
# on a developer's machine they draw new ones each time, to keep finding what nobody thought of.
settings.register_profile("ci", derandomize=True, database=None)
if os.environ.get("CI"):
    settings.load_profile("ci")


@pytest.fixture(autouse=True)
def one_thread() -> Any:
    """Every in-process run (train.threads: auto takes at most torch's count) and every hand-written
    loop a test compares it with compute on one thread. Under `pytest -n auto` the test workers share
    the cores, and an operation split among threads that the machine's load leaves unequal was seen
    to round differently from one loop to the other (a last-bit difference in a loss)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# The tests that use a Ray instance run in one test worker (pytest-xdist's loadgroup: pyproject's
# addopts), so that the session starts one ray_cluster, not one per worker (seconds of CPU each).
RAY_GROUP = pytest.mark.xdist_group("ray")


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[str]:
    """A Ray instance on the loopback interface that the tests needing only somewhere to run tasks
    share (`compare --executor ray --address ADDRESS`): one start, and warm workers, instead of one
    local instance per command, each taking seconds to start and its workers seconds to import torch.
    It runs in a session of its own, ended with its `ray start` (never `ray stop`, which would end
    another test worker's instance too). `--executor ray` without an address, the local instance a
    command starts for itself, is tested on its own in tests/test_ray.py."""
    from optcli.train.distributed import free_port

    port = free_port()
    folder = Path(tempfile.mkdtemp(prefix="optcli-ray-"))  # its sockets and logs (Ray's own /tmp/ray aside)
    log = folder / "ray-start.log"
    command = [str(Path(sys.executable).parent / "ray"), "start", "--head", "--block", f"--port={port}"]
    command.append(f"--temp-dir={folder}")
    command += ["--node-ip-address=127.0.0.1", "--num-cpus=2", "--include-dashboard=false"]
    # Every port it would take by a fixed default, free ones: another test worker's instance may run.
    for option in ("ray-client-server", "dashboard-agent-listen", "dashboard-agent-grpc", "metrics-export"):
        command.append(f"--{option}-port={free_port()}")
    command += [f"--runtime-env-agent-port={free_port()}", "--disable-usage-stats"]
    with log.open("w") as output:
        process = subprocess.Popen(
            command,
            stdout=output,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONPATH": str(REPO)},
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 120
        while "Ray runtime started" not in log.read_text():
            assert process.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        yield f"127.0.0.1:{port}"
    finally:
        process.terminate()  # `ray start --block` ends its instance's processes on its way out
        try:
            process.wait(timeout=30)
        finally:
            with contextlib.suppress(ProcessLookupError):  # anything of it left
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def write_config(directory: Path, config: dict[str, Any] | str, name: str = "config.yaml") -> Path:
    path = directory / name
    path.write_text(config if isinstance(config, str) else yaml.safe_dump(config, sort_keys=False))
    return path


# typer's CliRunner builds the click command from the app's signatures again at every invoke (12 ms: a
# seventh of the quick lane's CPU, over its thousand-odd invokes); the app is the same all session.
assert hasattr(typer.testing, "_get_command"), "typer's CliRunner no longer builds through _get_command"
typer.testing._get_command = functools.cache(typer.testing._get_command)


def invoke(*args: str | Path) -> Result:
    return CliRunner().invoke(app, [str(arg) for arg in args])


def assert_clean_exit(result: Result, code: int) -> None:
    """The exit code is the expected one and no Python traceback reached the user."""
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    if result.exception is not None:
        assert isinstance(result.exception, SystemExit), repr(result.exception)


def config_error(result: Result) -> str:
    assert_clean_exit(result, 2)
    assert result.stderr.startswith("error: "), result.output
    return result.stderr


def run_dirs(out: Path) -> list[Path]:
    return sorted(path.parent for path in out.glob("*/*/config.yaml"))


def only_run_dir(out: Path) -> Path:
    found = run_dirs(out)
    assert len(found) == 1, found
    return found[0]


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as stream:
        return list(csv.DictReader(stream))


def read_summary(run_dir: Path) -> dict[str, Any]:
    return json.loads((run_dir / "summary.json").read_text())


def column(rows: list[dict[str, str]], key: str) -> list[float]:
    return [float(row[key]) for row in rows]


# A small learnable task with a validation split: runs of a second or less.
SMALL_TEACHER = {
    "name": "teacher",
    "samples": 128,
    "features": 8,
    "classes": 3,
    "batch_size": 32,
    "val_fraction": 0.25,
}


# A run of several seconds (10,000 steps of 10 an epoch), to stop, kill or signal while it trains.
LONG_RUN = {
    "seed": 1,
    "device": "cpu",
    "model": {"name": "mlp", "hidden": [32]},
    "data": {"name": "teacher", "samples": 320, "features": 8, "classes": 3, "batch_size": 32},
    "optimizer": {"name": "adam", "lr": 0.003},
    "train": {"epochs": 1000},
}


def guide_config(**sections: Any) -> dict[str, Any]:
    """The guide's SimpleNN on random data, with any section replaced."""
    config: dict[str, Any] = {
        "seed": 0,
        "device": "cpu",
        "model": {"name": "mlp", "hidden": [128]},
        "data": {"name": "random", "samples": 256, "features": 784, "classes": 10, "batch_size": 64},
        "optimizer": {"name": "adam", "lr": 1e-3},
        "train": {"epochs": 2},
    }
    config.update(sections)
    return config


@pytest.fixture
def tensor_file(tmp_path: Path) -> Path:
    """The guide's data saved as a file: 256 random 784-feature inputs with labels 0..9."""
    generator = torch.Generator().manual_seed(1234)
    path = tmp_path / "data.pt"
    torch.save(
        {
            "x": torch.randn(256, 784, generator=generator),
            "y": torch.randint(0, 10, (256,), generator=generator),
        },
        path,
    )
    return path


def one_infinite_batch(directory: Path, **train: Any) -> dict[str, Any]:
    """A linear regression whose second batch of 16 (in order, unshuffled) has inputs so large that its
    squared error overflows to inf (the data itself is finite: non-finite data is a config error)."""
    x = torch.randn(64, 4, generator=torch.Generator().manual_seed(0))
    y = torch.randn(64, 1, generator=torch.Generator().manual_seed(1))
    x[16:32] = 1e30
    torch.save({"x": x, "y": y}, directory / "d.pt")
    return {
        "device": "cpu",
        "model": {"name": "linear"},
        "data": {"name": "tensors", "path": "d.pt", "batch_size": 16, "shuffle": False},
        "optimizer": {"name": "sgd", "lr": 0.01},
        "train": {"epochs": 2, **train},
    }


def train_ok(config_path: Path, out: Path, *extra: str) -> Path:
    result = invoke("train", config_path, "--out", out, "--quiet", *extra)
    assert_clean_exit(result, 0)
    return run_dirs(out)[-1]


def start_optcli(*args: str | Path, fresh: bool = False, **environment: str) -> Command:
    """`python -m optcli ARGS` in a session of its own, so that a signal can reach it and its children
    (DataLoader workers, torchrun's workers) as a terminal's would; with SIGINT, SIGHUP, SIGTERM and
    SIGQUIT at their defaults, as a terminal starts a command, even where the tests run under nohup or
    in a shell's background (which ignore some, and an ignored signal stays ignored, optcli's included).

    Forked from the test worker's command server (tests/command_server.py: torch already imported),
    unless `fresh`: a new interpreter, for the tests of a command's start-up itself."""
    env = {**os.environ, "PYTHONPATH": str(REPO), **environment}
    if not fresh:
        assert "PYTHONPATH" not in environment, "a PYTHONPATH of its own takes a fresh interpreter"
        return COMMANDS.start([str(arg) for arg in args], env, os.getcwd())
    command = [sys.executable, "-m", "optcli", *map(str, args)]
    return subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        start_new_session=True,
        preexec_fn=signals_as_a_terminal_leaves_them,
    )


def run_optcli(
    *args: str | Path, timeout: float = 120, **environment: str
) -> subprocess.CompletedProcess[str]:
    """`python -m optcli ARGS` to its end, as start_optcli starts it; killed with its session (and the
    test failed) if it takes longer than `timeout` seconds."""
    process = start_optcli(*args, **environment)
    stdout, stderr = to_the_end(process, timeout)
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


def wait_for_rows(out: Path, rows: int, process: Command, seconds: float = 120) -> Path:
    """The run directory under `out` once its metrics.csv holds `rows` rows (the process still running)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for metrics in out.glob("*/*/metrics.csv"):
            with metrics.open() as stream:
                if sum(1 for _ in stream) - 1 >= rows:
                    return metrics.parent
        assert process.poll() is None, process.communicate()
        time.sleep(0.01)
    raise AssertionError(f"{rows} rows not written within {seconds:.0f} s")


# A comparison's columns that measure time: the only ones two runs of the same comparison may differ in.
TIME_COLUMNS = ("train_time_s", "time_to_target_s", "mean_train_time_s", "median_time_to_target_s")


def rows_without_times(path: Path) -> list[dict[str, str]]:
    """A comparison's results.csv or summary.csv, its time columns left out."""
    return [{key: value for key, value in row.items() if key not in TIME_COLUMNS} for row in read_csv(path)]


def runs_under_way(root: Path) -> dict[int, Path]:
    """The processes training a run under `root` (found through /proc, Linux): pid -> the run's folder,
    where the metrics.csv it holds open is."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            opened = [Path(os.readlink(fd)) for fd in (entry / "fd").iterdir()]
        except OSError:
            continue  # it ended meanwhile, or is not ours to read
        found.update(
            {
                int(entry.name): path.parent
                for path in opened
                if path.name == "metrics.csv" and root in path.parents
            }
        )
    return found


def kill_a_run_under_way(root: Path, process: Command, seconds: float = 120) -> Path:
    """SIGKILL, as the kernel's out-of-memory killer would, a process training a run under `root` once
    that run has a checkpoint; its folder."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()
        for pid, run_dir in runs_under_way(root).items():
            if (run_dir / "checkpoints" / "last.pt").is_file():
                os.kill(pid, signal.SIGKILL)
                return run_dir
        time.sleep(0.01)
    raise AssertionError(f"no run was caught under way within {seconds:.0f} s")


def finish(process: Command, seconds: float) -> str:
    """The process's stderr once it has ended (see to_the_end)."""
    return to_the_end(process, seconds)[1]


def to_the_end(process: Command, seconds: float) -> tuple[str, str]:
    """The process's stdout and stderr once it has ended; if it does not end within `seconds`, it is
    killed with its children (its whole session) and the test fails."""
    try:
        return process.communicate(timeout=seconds)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        raise AssertionError(f"still running after {seconds:.0f} s: killed") from None


def wait_for_session_to_end(process: Command, seconds: float = 60) -> None:
    """Until no process of `process`'s session is left (a killed command's workers stop at its death,
    writing their checkpoints): the event itself, not a guess at how long it takes."""
    deadline = time.monotonic() + seconds
    while _session_members(process.pid):
        assert time.monotonic() < deadline, f"processes of the session still running after {seconds:.0f} s"
        time.sleep(0.02)


def _session_members(session: int) -> list[int]:
    members = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue  # ended meanwhile
            if int(fields[3]) == session and fields[0] != "Z":  # (its session id; a zombie has ended)
                members.append(int(entry.name))
    return members


IMPORT_GATE = """
import importlib.abc, os, pathlib, sys, time

class _Gate(importlib.abc.MetaPathFinder):
    # The first import of {module!r} in each process says it has begun (a file named by the process
    # id), then takes {seconds} s: a window for a test's signal to arrive in.
    def find_spec(self, name, path=None, target=None):
        if name == {module!r}:
            sys.meta_path.remove(self)
            pathlib.Path({folder!r}, str(os.getpid())).touch()
            time.sleep({seconds})
        return None

sys.meta_path.insert(0, _Gate())
"""


def importing_slowly(tmp_path: Path, module: str, seconds: float = 2) -> tuple[dict[str, str], Path]:
    """The environment for start_optcli in which every process's import of `module` first drops a
    file in the returned folder, then waits `seconds` (a sitecustomize.py on PYTHONPATH)."""
    hooks, begun = tmp_path / "import-gate", tmp_path / "importing"
    hooks.mkdir()
    begun.mkdir()
    gate = IMPORT_GATE.format(module=module, folder=str(begun), seconds=seconds)
    (hooks / "sitecustomize.py").write_text(gate)
    return {"PYTHONPATH": f"{hooks}{os.pathsep}{REPO}"}, begun
