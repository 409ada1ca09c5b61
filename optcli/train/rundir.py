"""The run directory: `<output.dir>/<name>/<YYYYmmdd-HHMMSS>/`, created fresh and never reused."""

from __future__ import annotations

import contextlib
import errno
import functools
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

import yaml

from optcli.errors import ConfigError, TrainingFailed


def create_run_dir(output_dir: Path, name: str, clock: float | None = None, prefix: str = "") -> Path:
    """A new, empty directory for one run (`prefix` + a time stamp); a second one in the same second
    gets a `-2` suffix."""
    stamp = prefix + time.strftime("%Y%m%d-%H%M%S", time.localtime(clock))
    parent = output_dir / name
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise _cannot_create(parent, error) from None
    for attempt in range(1, 1000):
        candidate = parent / (stamp if attempt == 1 else f"{stamp}-{attempt}")
        try:
            candidate.mkdir()  # fails if it exists: an earlier run's files are never overwritten
        except FileExistsError:
            continue
        except OSError as error:
            raise _cannot_create(candidate, error) from None
        return candidate
    raise ConfigError(f"output.dir: too many runs named {name} started at {stamp}")


def _cannot_create(path: Path, error: OSError) -> Exception:
    """A full disk is a failure to run (exit 1); anything else (no permission, a file in the way) is
    the config's output.dir to fix (exit 2)."""
    if error.errno in (errno.ENOSPC, errno.EDQUOT):
        return TrainingFailed(f"cannot create {path}: {error.strerror}")
    return ConfigError(f"output.dir: cannot create {path}: {error.strerror or error}")


def read_csv_rows(path: Path) -> list[dict[str, str]]:
    """A run's CSV file (metrics.csv, epochs.csv, evals.csv) as rows; none when it is not there."""
    import csv

    try:
        with path.open(newline="", encoding="utf-8") as stream:
            return list(csv.DictReader(stream))
    except FileNotFoundError:
        return []


def remove_orphans(directory: Path, prefix: str) -> None:
    """Files and folders in `directory` named `<prefix><pid>-...` whose process is gone (killed while
    writing them): a later command removes what an earlier one could not."""
    import shutil

    try:
        found = [entry for entry in directory.iterdir() if entry.name.startswith(prefix)]
    except OSError:
        return
    for entry in found:
        pid = entry.name[len(prefix) :].partition("-")[0]
        if pid.isdigit() and not _alive(int(pid)):
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    return True


def write_atomically(path: Path, text: str) -> None:
    """Write a whole text file or nothing."""
    replace_atomically(path, lambda stream: stream.write(text.encode("utf-8")))


# How the temporary files of replace_atomically end (their names start with a dot); ".link": those of
# the hard links earlier versions made for best.pt, removed too.
_REPLACING, _LINKING = ".tmp", ".link"


def remove_partial_writes(directory: Path) -> None:
    """The temporary files in `directory` of writes that a kill cut short (a resumed run keeps none)."""
    for suffix in (_REPLACING, _LINKING):
        for stale in directory.glob(f".*{suffix}"):
            stale.unlink(missing_ok=True)


def replace_atomically(path: Path, write: Callable[[BinaryIO], object]) -> None:
    """A temporary file beside `path`, written by `write`, flushed and fsynced, then renamed over
    `path`: a crash or a full disk while writing leaves the previous file intact, never half of one.
    The temporary file's name holds this process's id: one that a killed process left is removed by
    the next write to `path` (remove_orphans)."""
    if not path.parent.is_dir():  # (named, rather than the temporary file that could not be made)
        raise FileNotFoundError(errno.ENOENT, "no such folder", str(path.parent))
    remove_orphans(path.parent, f".{path.name}.")
    prefix = f".{path.name}.{os.getpid()}-"
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=prefix, suffix=_REPLACING)
    try:
        # mkstemp makes the file private (0600); the run's files are for colleagues too: the user's umask decides.
        os.fchmod(handle, 0o666 & ~_umask())
        with os.fdopen(handle, "wb") as stream:
            write(stream)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException as error:
        Path(temporary).unlink(missing_ok=True)
        if isinstance(error, OSError) and error.filename is None:
            # A write or fsync that failed (a full disk) names no file: name the one being written,
            # not the temporary file beside it.
            raise OSError(error.errno, error.strerror, str(path)) from None
        raise


@functools.cache
def _umask() -> int:
    """The process's umask (reading it means setting it: once, and put straight back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_yaml(path: Path, values: dict[str, Any], header: str = "") -> None:
    write_atomically(path, header + yaml.safe_dump(values, sort_keys=False, allow_unicode=True))


LOCK_FILE = ".optcli.lock"


@contextlib.contextmanager
def writer_lock(directory: Path, what: str) -> Iterator[None]:
    """This process is the one writer of `directory` (a run's or a comparison's) while the block runs:
    an exclusive OS lock on its lock file, which the kernel releases when the process ends, however it
    ends, so a stale lock never blocks. A second writer gets a ConfigError naming the holder."""
    try:
        import fcntl
    except ImportError:  # (Windows: no flock; one writer is then the user's to keep)
        yield
        return
    path = directory / LOCK_FILE
    # (An OSError opening it, a full disk say, is the caller's to report.)
    handle = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o666 & ~_umask())
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(handle, 32, 0).decode(errors="replace").strip() or "unknown"
            raise ConfigError(
                f"{directory}: another optcli process (pid {holder}) is writing this {what}; wait for it to "
                f"end, or stop it (kill {holder}) and resume then"
            ) from None
        os.ftruncate(handle, 0)
        os.pwrite(handle, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(handle)  # (which releases the lock)
