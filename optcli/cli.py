"""The `optcli` command: a thin shell that parses arguments, calls the library and shows results.

Only this module prints errors and chooses exit codes: 2 for config and usage errors, 1 for a run
that failed, 130 for an interrupt. Nothing heavy is imported at the top, so `optcli --help` is quick
(torch loads only when a command needs it).
"""

from __future__ import annotations

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


def fail(message: str, code: int) -> NoReturn:
    # Plain text on stderr: messages quote YAML such as [128], which Rich would read as markup.
    print(f"error: {message}", file=sys.stderr)
    raise typer.Exit(code)


@contextmanager
def reported_errors(debug: bool) -> Iterator[None]:
    """Turn the library's exceptions into one clear message and an exit code."""
    from optcli.errors import ConfigError, Interrupted, TrainingFailed

    try:
        yield
    except typer.Exit:
        raise
    except Exception as error:
        if debug:
            traceback.print_exc()
        if isinstance(error, ConfigError):
            fail(str(error), EXIT_CONFIG)
        if isinstance(error, TrainingFailed):
            fail(
                f"{error}" + (f"\nwhat was written is in {error.run_dir}" if error.run_dir else ""),
                EXIT_FAILED,
            )
        internal = f"internal error: {type(error).__name__}: {error}"
        fail(f"{internal}\n(run again with --debug for the traceback, and please report it)", EXIT_FAILED)
    except KeyboardInterrupt as interrupt:
        if isinstance(interrupt, Interrupted):
            where = interrupt.run_dir or "RUN_DIR"
            print(
                f"interrupted: a checkpoint was written; optcli resume {where} continues the run",
                file=sys.stderr,
            )
        else:
            print("interrupted", file=sys.stderr)
        raise typer.Exit(EXIT_INTERRUPTED) from None


def run_overrides(
    settings: list[str] | None, device: str | None, out: Path | None, max_steps: int | None
) -> list[str]:
    """`--set` strings with `--device`, `--out` and `--max-steps` as overrides of their keys."""
    from optcli.config.loading import option_overrides

    output = str(out) if out is not None else None
    return option_overrides(settings, {"device": device, "output.dir": output, "train.max_steps": max_steps})


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


@app.command()
def train(
    config: ConfigArgument,
    settings: SetOption = None,
    device: DeviceOption = None,
    out: OutOption = None,
    max_steps: MaxStepsOption = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print only the final summary line.")] = False,
    debug: DebugOption = False,
) -> None:
    """Train the model a config describes, writing metrics.csv, epochs.csv and summary.json.

    Example: optcli train configs/adam_steplr.yaml --set optimizer.lr=3e-4 --set train.epochs=5
    """
    with reported_errors(debug):
        from optcli.config.loading import load_config
        from optcli.config.resolve import resolve_config

        spec = resolve_config(load_config(config, run_overrides(settings, device, out, max_steps)))
        _print_advice({"": spec})
        _train_and_report(spec, quiet)


@app.command()
def resume(
    run_dir: Annotated[Path, typer.Argument(metavar="RUN_DIR", help="The run's directory.")],
    settings: SetOption = None,
    allow_changes: Annotated[
        bool,
        typer.Option(
            "--allow-changes", help="Continue even if the config now differs from the checkpoint's."
        ),
    ] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print only the final summary line.")] = False,
    debug: DebugOption = False,
) -> None:
    """Continue an interrupted or crashed run from its last checkpoint, exactly as if it had not stopped.

    Example: optcli resume runs/adam_steplr/20261125-181520 --set optimizer.lr=3e-4 --allow-changes
    """
    with reported_errors(debug):
        from optcli.train.resume import prepare_resume

        spec, point = prepare_resume(run_dir, run_overrides(settings, None, None, None), allow_changes)
        _train_and_report(spec, quiet, run_dir=run_dir, resume=point)


@app.command()
def check(
    config: ConfigArgument,
    settings: SetOption = None,
    device: DeviceOption = None,
    out: OutOption = None,
    max_steps: MaxStepsOption = None,
    resolved: Annotated[
        bool, typer.Option("--resolved", help="Print the resolved config, every default filled in.")
    ] = False,
    strict: Annotated[bool, typer.Option("--strict", help="Treat warnings as errors (exit 2).")] = False,
    debug: DebugOption = False,
) -> None:
    """Validate a config (or a compare file, every arm) as `train` (or `compare`) would, without
    training; warn about what would surely go wrong.

    Exits 0 if it is valid (warnings are printed), 2 if not (or if --strict and there are warnings).
    Example: optcli check configs/adam_steplr.yaml --set optimizer.name=sgd
    """
    with reported_errors(debug):
        import yaml

        from optcli.compare.plan import check_file
        from optcli.config.advice import advise
        from optcli.errors import ConfigError

        specs, outline = check_file(config, run_overrides(settings, device, out, max_steps))
        if strict and (warnings := advise(specs)[1]):
            raise ConfigError([f"(--strict) {warning}" for warning in warnings])
        warnings = _print_advice(specs)
        if resolved:
            shown = specs[""].resolved if "" in specs else {arm: spec.resolved for arm, spec in specs.items()}
            print(yaml.safe_dump(shown, sort_keys=False), end="")
        print(f"ok: {config}: {outline}" + (f"; {len(warnings)} warning(s)" if warnings else ""))


def _train_and_report(spec: RunSpec, quiet: bool, **where: Any) -> None:
    """Train with the display the terminal calls for; print the final line."""
    from optcli.train.display import make_display, summary_line
    from optcli.train.run import train_run

    result = train_run(spec, [make_display(spec.name, quiet)], **where)
    print(summary_line(result.summary, result.run_dir))


def _print_advice(specs: dict[str, RunSpec]) -> list[str]:
    """Print the notes and warnings of one run or of each arm (on stderr); return the warnings."""
    from optcli.config.advice import advise

    notes, warnings = advise(specs)
    for kind, lines in (("note", notes), ("warning", warnings)):
        for line in lines:
            print(f"{kind}: {line}", file=sys.stderr)
    return warnings


@app.command()
def compare(
    files: Annotated[
        list[Path], typer.Argument(metavar="FILE...", help="A compare file, or two or more config files.")
    ],
    seeds: Annotated[
        str | None,
        typer.Option(help="A count (3: seeds 0, 1, 2) or a list (0,1,2). Default: the file's, or 3."),
    ] = None,
    settings: SetOption = None,
    metric: Annotated[
        str | None,
        typer.Option(
            help="What ranks the arms: final_loss, best_loss, val_loss, val_accuracy, steps_to_target, time_to_target."
        ),
    ] = None,
    target_loss: Annotated[
        float | None, typer.Option(help="The loss that steps_to_target and time_to_target count to.")
    ] = None,
    jobs: Annotated[int, typer.Option(min=1, help="Runs at a time, each in its own process.")] = 1,
    out: Annotated[Path | None, typer.Option(help="Write the comparison under this folder.")] = None,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="Print only the table and the verdict.")
    ] = False,
    debug: DebugOption = False,
) -> None:
    """Compare optimizers or schedules: every arm from the same weights on the same batches, over seeds.

    Example: optcli compare configs/compare_guide.yaml --seeds 0,1,2 --jobs 2 --target-loss 0.5
    """
    with reported_errors(debug):
        from optcli.compare.jobs import plan_jobs, start_workers

        # Started first, so that the workers import torch while this process reads and checks the plan.
        pool = start_workers(jobs)

        from optcli.compare.display import make_comparison_display, output_console, ranking_table
        from optcli.compare.plan import CommandLine, load_plan
        from optcli.compare.run import ComparisonInterrupted, run_comparison

        command_line = CommandLine(run_overrides(settings, None, None, None), seeds, metric, target_loss, out)
        try:
            plan = load_plan(files, command_line)
        except BaseException:
            if pool is not None:
                pool.close()
            raise
        _print_advice({arm.name: arm.spec for arm in plan.arms if arm.spec})
        console = output_console()
        try:
            with make_comparison_display(console, plan_jobs(plan, Path()), quiet) as display:
                result = run_comparison(plan, pool, display)
        except ComparisonInterrupted as interrupted:
            print(f"interrupted: the finished runs are in {interrupted.result.directory}", file=sys.stderr)
            raise typer.Exit(EXIT_INTERRUPTED) from None
        console.print(ranking_table(result.ranked, plan.ranking_metric, result.verdict), markup=False)
        print(result.verdict.text)
        print(f"-> {result.directory}")


@app.command()
def schedule(
    config: ConfigArgument,
    settings: SetOption = None,
    max_steps: MaxStepsOption = None,
    csv: Annotated[Path | None, typer.Option("--csv", help="Write step,epoch,lr to this file.")] = None,
    png: Annotated[Path | None, typer.Option("--png", help="Draw the schedule to this PNG file.")] = None,
    debug: DebugOption = False,
) -> None:
    """Show the learning rate of every optimizer step of the run a config describes, without training.

    Example: optcli schedule configs/warmup_cosine.yaml --csv schedule.csv --png schedule.png
    """
    with reported_errors(debug):
        from optcli.compare.plan import check_file
        from optcli.config.schedule import (
            describe_schedule,
            planned_rates,
            save_schedule_png,
            schedule_csv,
            text_plot,
        )

        specs, _ = check_file(config, run_overrides(settings, None, None, max_steps))
        if "" not in specs:
            fail(f"{config}: a compare file; give one arm's config to see its schedule", EXIT_CONFIG)
        spec = specs[""]
        planned = planned_rates(spec)
        lines = describe_schedule(spec, planned)
        print("\n".join([lines[0], *text_plot([row.lr for row in planned]), *lines[1:]]))
        if csv is not None:
            csv.write_text(schedule_csv(planned))
        if png is not None:
            save_schedule_png(str(png), planned, spec.name)


@app.command("list")
def list_command(
    kind: Annotated[
        str | None, typer.Argument(help="optimizers, schedulers, models, datasets or losses (default: all).")
    ] = None,
) -> None:
    """List every name a config can use, with its parameters and defaults.

    Example: optcli list schedulers
    """
    with reported_errors(debug=False):
        from rich.console import Console

        from optcli.components.listing import KINDS, kind_named, listing_table

        for name in [kind_named(kind)] if kind is not None else KINDS:
            Console().print(listing_table(name), markup=False)


def main() -> None:
    app()
