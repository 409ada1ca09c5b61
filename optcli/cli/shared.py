"""What every command shares: the Typer app, the common options, and turning the library's errors into
one clear message and an exit code (2 for config and usage errors, 1 for a run that failed, 130 for an
interrupt). Only the CLI prints errors and chooses exit codes."""

from __future__ import annotations

import os
import sys
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer

from optcli import __version__

if TYPE_CHECKING:
    from optcli.config.spec import RunSpec

app = typer.Typer(
    help="Train PyTorch models from YAML configs and find the optimizer and schedule that suit them.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)

EXIT_CONFIG = 2
EXIT_FAILED = 1
EXIT_INTERRUPTED = 130

SetOption = Annotated[
    list[str] | None,
    typer.Option("--set", metavar="KEY=VALUE", help="Override a config key, e.g. --set optimizer.lr=3e-4."),
]
DebugOption = Annotated[bool, typer.Option("--debug", help="Show Python tracebacks for errors.")]
ConfigArgument = Annotated[Path, typer.Argument(metavar="CONFIG", help="A YAML config file.")]
DeviceOption = Annotated[str | None, typer.Option(help="auto, cpu, cuda, cuda:N or mps.")]
OutOption = Annotated[
    Path | None, typer.Option(help="Write the run under this folder (replaces output.dir).")
]
MaxStepsOption = Annotated[int | None, typer.Option(help="Stop after this many optimizer steps.")]
ThreadsOption = Annotated[
    int | None,
    typer.Option(
        min=1,
        help="torch's threads for the run (train.threads); default auto: one for a small step, else the idle cores.",
    ),
]
NprocOption = Annotated[
    int | None,
    typer.Option(
        "--nproc",
        min=1,
        help="Train data-parallel in this many processes on this machine (torchrun's engine).",
    ),
]
MaxRestartsOption = Annotated[
    int,
    typer.Option(
        "--max-restarts",
        min=0,
        help="With --nproc: restart the processes this many times after one dies, resuming.",
    ),
]


def fail(message: str, code: int) -> NoReturn:
    # Plain text on stderr: messages quote YAML such as [128], which Rich would read as markup.
    print(f"error: {message}", file=sys.stderr)
    raise typer.Exit(code)


@contextmanager
def reported_errors(debug: bool) -> Iterator[None]:
    """Turn the library's exceptions into one clear message and an exit code."""
    from optcli.errors import ConfigError, ExportFailed, Interrupted, PeerLost, TrainingFailed
    from optcli.process.interrupts import stop_signals_as_ctrl_c

    try:
        # SIGTERM and SIGHUP stop every command as Ctrl-C does: what it was writing is removed, and it
        # exits 130 (train swaps in its own handler around the loop, to checkpoint first).
        with stop_signals_as_ctrl_c():
            yield
    except typer.Exit:
        raise
    except Exception as error:
        if debug:
            traceback.print_exc()
        if isinstance(error, ConfigError):
            fail(str(error), EXIT_CONFIG)
        if isinstance(error, PeerLost):  # a torchrun worker whose peer died: the launcher says it
            raise typer.Exit(EXIT_FAILED) from None
        if isinstance(error, TrainingFailed):
            fail(
                f"{error}" + (f"\nwhat was written is in {error.run_dir}" if error.run_dir else ""),
                EXIT_FAILED,
            )
        if isinstance(error, ExportFailed):
            fail(str(error), EXIT_FAILED)
        if isinstance(error, OSError):  # a file a command reads or writes: a full disk, a permission
            path = f" {error.filename}" if error.filename else ""
            fail(f"cannot read or write{path}: {error.strerror or error}", EXIT_FAILED)
        internal = f"internal error: {type(error).__name__}: {error}"
        fail(f"{internal}\n(run again with --debug for the traceback, and please report it)", EXIT_FAILED)
    except KeyboardInterrupt as interrupt:
        if os.environ.get("RANK", "0") != "0":
            raise typer.Exit(EXIT_INTERRUPTED) from None  # one of torchrun's workers: rank 0 says it
        if isinstance(interrupt, Interrupted) and not interrupt.resumable:
            print(
                f"interrupted: no checkpoint was written (train.checkpoint: false); what was written is in "
                f"{interrupt.run_dir}",
                file=sys.stderr,
            )
        elif isinstance(interrupt, Interrupted):
            where = interrupt.run_dir or "RUN_DIR"
            processes = int(os.environ.get("WORLD_SIZE", "1"))
            where = f"{where} --nproc {processes}" if processes > 1 else where
            print(
                f"interrupted: a checkpoint was written; optcli resume {where} continues the run",
                file=sys.stderr,
            )
        else:
            print("interrupted", file=sys.stderr)
        raise typer.Exit(EXIT_INTERRUPTED) from None


def run_overrides(
    settings: list[str] | None,
    device: str | None,
    out: Path | None,
    max_steps: int | None,
    threads: int | None = None,
) -> list[str]:
    """`--set` strings with `--device`, `--out`, `--max-steps` and `--threads` as overrides of their keys."""
    from optcli.config.loading import option_overrides

    output = str(out) if out is not None else None
    values = {"device": device, "output.dir": output, "train.max_steps": max_steps, "train.threads": threads}
    return option_overrides(settings, values)


def _version_callback(value: bool) -> None:
    if value:
        print(f"optcli {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version_callback, is_eager=True, help="Show the version and exit."
        ),
    ] = False,
) -> None:
    """optcli: config-driven PyTorch training and optimizer comparison."""


def train_and_report(spec: RunSpec, quiet: bool, world: Any = None, **where: Any) -> None:
    """Train with the display the terminal calls for; print the final line. Under torchrun (`world`),
    as one of its workers: rank 0 shows the table and the line."""
    from optcli.train.run import train_run
    from optcli.train.sinks.display import make_display, summary_line

    if world is not None and world.launched:
        from optcli.train.launched_run import train_in_world

        result = train_in_world(spec, world, [make_display(spec.name, quiet)], **where)
        if world.is_main:
            print(summary_line(result.summary, result.run_dir))
        return
    result = train_run(spec, [make_display(spec.name, quiet)], **where)
    print(summary_line(result.summary, result.run_dir))


def forwarded_options(
    settings: list[str] | None,
    device: str | None,
    out: Path | None,
    max_steps: int | None,
    quiet: bool,
    debug: bool,
) -> list[str]:
    """The options a launcher passes on to its workers, as they were given."""
    forwarded = [f"--set={setting}" for setting in settings or []]
    forwarded += [f"--device={device}"] if device else []
    forwarded += [f"--out={out}"] if out is not None else []
    forwarded += [f"--max-steps={max_steps}"] if max_steps is not None else []
    return forwarded + (["--quiet"] if quiet else []) + (["--debug"] if debug else [])


def print_advice(specs: dict[str, RunSpec]) -> list[str]:
    """Print the notes and warnings of one run or of each arm (on stderr); return the warnings."""
    from optcli.config.advice import advise

    notes, warnings = advise(specs)
    for kind, lines in (("note", notes), ("warning", warnings)):
        for line in lines:
            print(f"{kind}: {line}", file=sys.stderr)
    return warnings


def launch_workers(spec: RunSpec, processes: int, max_restarts: int, command: list[str], debug: bool) -> None:
    """`--nproc N`: the command in N worker processes through torch's elastic launcher, once the run
    is checked to split among them; a failure is one message naming the rank that failed (its own
    message is above it)."""
    import logging

    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError

    from optcli.train.distributed import launch, new_run_id, run_pointer
    from optcli.train.launched_run import check_world

    check_world(spec, processes)
    run_id = new_run_id()
    if not debug:  # the launcher's own progress and failure reports: the workers say what matters
        for name in [*logging.root.manager.loggerDict, "torch.distributed"]:
            if name.startswith("torch.distributed"):
                logging.getLogger(name).setLevel(logging.CRITICAL)
    try:
        launch(processes, max_restarts, command, run_id)
    except SignalException:  # Ctrl-C or SIGTERM: the workers stopped together and rank 0 said where
        raise typer.Exit(EXIT_INTERRUPTED) from None
    except ChildFailedError as error:
        codes = {rank: failure.exitcode for rank, failure in error.failures.items()}
        if EXIT_INTERRUPTED in codes.values():
            raise typer.Exit(EXIT_INTERRUPTED) from None
        if set(codes.values()) == {EXIT_CONFIG}:
            raise typer.Exit(EXIT_CONFIG) from None
        # The ranks that died: the others stopped because of them, or were stopped by torchrun's
        # SIGTERM once one had died (and said nothing of it).
        import signal

        died = {rank: code for rank, code in codes.items() if code < 0 and code != -signal.SIGTERM} or codes
        failed = "; ".join(f"rank {rank} {_ended(code)}" for rank, code in sorted(died.items()))
        restarts = f" after {max_restarts} restart(s)" if max_restarts else ""
        fail(f"training failed{restarts}: {failed}", EXIT_FAILED)
    finally:  # the launch's note for restarts (see train/launched_run.py): no restart can come now
        run_pointer(Path(spec.output.dir), spec.name, run_id).unlink(missing_ok=True)


def _ended(code: int) -> str:
    import signal

    if code < 0:
        return f"was killed by {signal.Signals(-code).name}"
    return f"exited with code {code}"
