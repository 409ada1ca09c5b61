"""The commands about several runs: compare, plot, and list (what a config can name)."""

from __future__ import annotations

import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer

from optcli.cli.shared import (
    EXIT_CONFIG,
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    DebugOption,
    SetOption,
    app,
    fail,
    print_advice,
    reported_errors,
    run_overrides,
)
from optcli.metrics.table import BUILTINS
from optcli.process.torch_import import import_torch

FilesArgument = Annotated[
    list[Path] | None, typer.Argument(metavar="FILE...", help="A compare file, or two or more config files.")
]
SeedsOption = Annotated[
    str | None, typer.Option(help="A count (3: seeds 0, 1, 2) or a list (0,1,2). Default: the file's, or 3.")
]
MetricOption = Annotated[
    str | None,
    typer.Option(
        help="What ranks the arms: final_loss, best_loss, steps_to_target, time_to_target, val_loss, or val_ "
        "and a metric the runs report (metrics:; e.g. val_accuracy, val_f1_macro). Built-in metrics: "
        f"{', '.join(name for name, facts in BUILTINS.items() if facts.file is None)}."
    ),
]
TargetLossOption = Annotated[
    float | None, typer.Option(help="The loss that steps_to_target and time_to_target count to.")
]
JobsOption = Annotated[int, typer.Option(min=1, help="Runs at a time, each in its own process.")]


class Executor(StrEnum):
    local = "local"
    ray = "ray"


class TimeMeasure(StrEnum):
    steps = "steps"
    seconds = "seconds"


ExecutorOption = Annotated[
    Executor,
    typer.Option(help="local: worker processes on this machine (--jobs); ray: Ray tasks (optcli[ray])."),
]
AddressOption = Annotated[
    str | None,
    typer.Option(help="With --executor ray: the cluster (auto, or ray://HOST:10001); default a local one."),
]
CpusOption = Annotated[float, typer.Option(min=0.0, help="With --executor ray: CPUs each run takes.")]
GpusOption = Annotated[float, typer.Option(min=0.0, help="With --executor ray: GPUs each run takes.")]
TimeOption = Annotated[
    TimeMeasure | None,
    typer.Option(
        "--time",
        help="A suite's profile measures steps (the default: machine-independent) or seconds (training time).",
    ),
]
ResumeOption = Annotated[
    Path | None,
    typer.Option(
        "--resume", metavar="COMPARE_DIR", help="Continue an interrupted or crashed comparison in its folder."
    ),
]


@app.command()
def compare(
    files: FilesArgument = None,
    seeds: SeedsOption = None,
    settings: SetOption = None,
    metric: MetricOption = None,
    target_loss: TargetLossOption = None,
    time: TimeOption = None,
    jobs: JobsOption = 1,
    out: Annotated[Path | None, typer.Option(help="Write the comparison under this folder.")] = None,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="Print only the table and the verdict.")
    ] = False,
    executor: ExecutorOption = Executor.local,
    address: AddressOption = None,
    cpus_per_run: CpusOption = 1.0,
    gpus_per_run: GpusOption = 0.0,
    resume: ResumeOption = None,
    allow_changes: Annotated[
        bool,
        typer.Option(
            "--allow-changes",
            help="With --resume: run every run of an arm whose config changed since the start again.",
        ),
    ] = False,
    debug: DebugOption = False,
) -> None:
    """Compare optimizers or schedules: every arm from the same weights on the same batches, over seeds.

    Example: optcli compare configs/compare_guide.yaml --seeds 0,1,2 --jobs 2 --target-loss 0.5
    """
    from optcli.process.interrupts import stop_signals_as_ctrl_c

    # SIGTERM and SIGHUP stop a comparison as Ctrl-C does: the finished runs reported, exit 130.
    with reported_errors(debug), stop_signals_as_ctrl_c():
        from optcli.errors import ConfigError
        from optcli.workers.pool import start_workers  # (imports no torch)

        # Started first, so that the workers import torch while this process does and checks the plan.
        if executor is Executor.ray:
            from optcli.compare.running.ray_pool import start_ray

            pool: Any = start_ray(address, cpus_per_run, gpus_per_run)
        else:
            pool = start_workers(jobs)
        try:
            import_torch()
            from optcli.compare.planning.plan import CommandLine

            command_line = CommandLine(
                overrides=run_overrides(settings, None, None, None),
                seeds=seeds,
                metric=metric,
                target_loss=target_loss,
                output_dir=out,
                time=time.value if time is not None else None,
            )
            if allow_changes and resume is None:
                raise ConfigError(
                    "--allow-changes goes with --resume (a comparison that changed since it began)"
                )
            paths, command_line = _what_to_compare(files, command_line, resume)
            _compare(paths, command_line, resume, pool, quiet, allow_changes)
        finally:
            if pool is not None:
                pool.close()


def _what_to_compare(
    files: list[Path] | None, command_line: Any, resume: Path | None
) -> tuple[list[Path], Any]:
    """The files and options to compare: those given, or with --resume those the comparison began with."""
    if resume is None:
        return files or [], command_line
    from optcli.compare.running.resume import load_invocation
    from optcli.errors import ConfigError

    if files or command_line.any_given():
        raise ConfigError(
            "--resume continues a comparison as it was started: give no files or options but --jobs, --quiet "
            "and --allow-changes"
        )
    return load_invocation(resume)


def _compare(
    paths: list[Path], command_line: Any, resume: Path | None, pool: Any, quiet: bool, allow_changes: bool
) -> None:
    """Check the plan, run it with a display, print the ranking and the verdict."""
    from optcli.compare.display import make_comparison_display, output_console, ranking_table
    from optcli.compare.planning.plan import load_plan
    from optcli.compare.planning.suite_plan import is_suite, load_suite
    from optcli.compare.run import ComparisonInterrupted, run_comparison
    from optcli.compare.running.jobs import plan_jobs
    from optcli.config.yaml_loader import load_yaml_mapping

    if len(paths) == 1 and is_suite(values := load_yaml_mapping(paths[0])):
        _compare_suite(
            load_suite(paths[0], values, command_line),
            paths,
            command_line,
            resume,
            pool,
            quiet,
            allow_changes,
        )
        return
    plan = load_plan(paths, command_line)
    print_advice({arm.name: arm.spec for arm in plan.arms if arm.spec})
    console = output_console()
    try:
        with make_comparison_display(console, plan_jobs(plan, Path()), quiet) as display:
            result = run_comparison(plan, pool, display, (paths, command_line), resume, allow_changes)
    except ComparisonInterrupted as interrupted:
        directory = interrupted.result.directory
        print(
            f"interrupted: the finished runs are in {directory}; optcli compare --resume {directory} goes on",
            file=sys.stderr,
        )
        raise typer.Exit(EXIT_INTERRUPTED) from None
    console.print(ranking_table(result.ranked, plan.metric_info, result.verdict), markup=False)
    print(result.verdict.text)
    print(f"-> {result.directory}")


def _compare_suite(
    suite: Any,
    paths: list[Path],
    command_line: Any,
    resume: Path | None,
    pool: Any,
    quiet: bool,
    allow_changes: bool,
) -> None:
    """A suite: every workload's comparison under one display, their rankings, then the profile scores."""
    from optcli.compare.display import make_comparison_display, output_console, ranking_table, suite_table
    from optcli.compare.suite import SuiteInterrupted, run_suite, suite_jobs
    from optcli.errors import ConfigError

    if (
        resume is not None
        and (resume.parent / "comparison.json").is_file()
        and resume.name in dict(suite.workloads)
    ):
        raise ConfigError(
            f"{resume} is one workload of a suite: resume the suite, optcli compare --resume {resume.parent}"
        )
    print_advice({f"{name}/{arm.name}": arm.spec for name, plan in suite.workloads for arm in plan.arms})
    console = output_console()
    for number, (name, plan) in enumerate(suite.workloads, 1):
        target = plan.target.words() if plan.target is not None else "its target"
        console.print(
            f"workload {number} of {len(suite.workloads)}: {name} ({target}; {len(plan.arms)} arms x "
            f"{len(plan.seeds)} seeds)",
            markup=False,
            highlight=False,
        )
    # One display for the whole suite (workloads x arms x seeds, and its time remaining).
    everything, offsets = suite_jobs(suite)
    try:
        with make_comparison_display(console, everything, quiet) as display:
            result = run_suite(
                suite,
                pool,
                lambda name, index, event: display(offsets[name] + index, event),
                (paths, command_line),
                resume,
                allow_changes,
            )
    except SuiteInterrupted as interrupted:
        print(
            f"interrupted: the finished runs are in {interrupted.directory}; optcli compare --resume "
            f"{interrupted.directory} goes on",
            file=sys.stderr,
        )
        raise typer.Exit(EXIT_INTERRUPTED) from None
    if not quiet:
        for name, plan in suite.workloads:
            workload = result.results[name]
            print(f"{name}: {plan.target.words() if plan.target else ''}")
            console.print(ranking_table(workload.ranked, plan.metric_info, workload.verdict), markup=False)
    console.print(suite_table(suite, result.summary), markup=False)
    print(result.summary.verdict)
    print(f"-> {result.directory}")


@app.command()
def plot(
    directories: Annotated[
        list[Path],
        typer.Argument(metavar="RUN_OR_COMPARE_DIR...", help="Run directories, or a comparison's."),
    ],
    out: Annotated[
        Path | None, typer.Option(help="The PNG to write (default: plot.png in the first directory).")
    ] = None,
    metric: Annotated[
        list[str] | None, typer.Option(help="An epochs.csv column to add a panel for, e.g. val_accuracy.")
    ] = None,
    debug: DebugOption = False,
) -> None:
    """Draw finished runs: loss (and validation loss), learning rate and gradient norm against the step.

    Example: optcli plot runs/adam_steplr/20261125-181520 runs/compare-compare_guide/20261125-182000
    """
    with reported_errors(debug):
        from optcli.compare.reporting.plot import draw_runs, find_runs, read_runs

        plotted = read_runs(find_runs(directories))
        missing = [
            name for name in metric or [] if not any(name in row for run in plotted for row in run.epochs)
        ]
        if missing:
            fail(f"--metric: no run has {', '.join(missing)} in its epochs.csv", EXIT_CONFIG)
        path = out or directories[0] / "plot.png"
        draw_runs(path, plotted, list(metric or []))
        print(f"-> {path}")


@app.command("mlflow-sync")
def mlflow_sync(
    directory: Annotated[
        Path, typer.Argument(metavar="RUN_OR_COMPARE_DIR", help="A finished run, or a comparison's folder.")
    ],
    tracking_uri: Annotated[
        str | None,
        typer.Option("--tracking-uri", help="Default: the run's output.mlflow, or MLFLOW_TRACKING_URI."),
    ] = None,
    debug: DebugOption = False,
) -> None:
    """Upload a run or a comparison to MLflow from its files, as live logging would have sent it.

    For runs made without output.mlflow, or while the tracking server was down. Example:
    optcli mlflow-sync runs/compare-compare_guide/20261125-190000 --tracking-uri sqlite:///mlflow.db
    """
    with reported_errors(debug):
        from optcli.errors import ConfigError
        from optcli.extras import missing, needs

        if missing("mlflow"):
            raise ConfigError(f"mlflow-sync {needs('mlflow')}")
        if not directory.is_dir() or not any(directory.glob("**/config.yaml")):
            raise ConfigError(f"{directory}: neither a run directory nor a comparison's folder")
        from optcli.compare.running.tracking import sync_directory

        synced = sync_directory(directory, tracking_uri)
        print("\n".join(map(str, synced)))
        if not all(one.uploaded for one in synced):
            raise typer.Exit(EXIT_FAILED)


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

        from optcli.config.listing import KINDS, kind_named, listing_table

        for name in [kind_named(kind)] if kind is not None else KINDS:
            Console().print(listing_table(name), markup=False)
