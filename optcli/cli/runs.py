"""The commands about one run: train, resume, check and schedule."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from optcli.cli.shared import (
    EXIT_CONFIG,
    EXIT_FAILED,
    ConfigArgument,
    DebugOption,
    DeviceOption,
    MaxRestartsOption,
    MaxStepsOption,
    NprocOption,
    OutOption,
    SetOption,
    ThreadsOption,
    app,
    fail,
    forwarded_options,
    launch_workers,
    print_advice,
    reported_errors,
    run_overrides,
    train_and_report,
)
from optcli.process.torch_import import import_torch


@app.command()
def train(
    config: ConfigArgument,
    settings: SetOption = None,
    device: DeviceOption = None,
    out: OutOption = None,
    max_steps: MaxStepsOption = None,
    threads: ThreadsOption = None,
    nproc: NprocOption = None,
    max_restarts: MaxRestartsOption = 0,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print only the final summary line.")] = False,
    debug: DebugOption = False,
) -> None:
    """Train the model a config describes, writing metrics.csv, epochs.csv and summary.json.

    Example: optcli train configs/adam_steplr.yaml --set optimizer.lr=3e-4 --set train.epochs=5
    """
    with reported_errors(debug):
        from optcli.compare.planning.files import check_structure

        overrides = run_overrides(settings, device, out, max_steps, threads)
        check_structure(config, overrides)  # before torch is imported: a wrong key is answered at once
        import_torch()
        from optcli.config.loading import load_config
        from optcli.config.resolve import resolve_config
        from optcli.train.distributed import world_from_environment

        spec = resolve_config(load_config(config, overrides))
        world = world_from_environment()
        if nproc is not None and not world.launched:  # the launcher: check, then start the workers
            print_advice({"": spec})
            forwarded = forwarded_options(settings, device, out, max_steps, quiet, debug)
            forwarded += [f"--threads={threads}"] if threads is not None else []
            launch_workers(spec, nproc, max_restarts, ["train", str(config), *forwarded], debug)
            return
        if world.is_main:
            print_advice({"": spec})
        train_and_report(spec, quiet, world=world)


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
    nproc: NprocOption = None,
    max_restarts: MaxRestartsOption = 0,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print only the final summary line.")] = False,
    debug: DebugOption = False,
) -> None:
    """Continue an interrupted or crashed run from its last checkpoint, exactly as if it had not stopped.

    Example: optcli resume runs/adam_steplr/20261125-181520 --set optimizer.lr=3e-4 --allow-changes
    """
    with reported_errors(debug):
        import_torch()
        from optcli.train.distributed import world_from_environment
        from optcli.train.resume import prepare_resume

        spec, point = prepare_resume(run_dir, run_overrides(settings, None, None, None), allow_changes)
        world = world_from_environment()
        if point.note and world.is_main and not world.launched:
            print(f"note: {point.note}", file=sys.stderr)
        if nproc is not None and not world.launched:
            forwarded = forwarded_options(settings, None, None, None, quiet, debug)
            changes = ["--allow-changes"] if allow_changes else []
            launch_workers(spec, nproc, max_restarts, ["resume", str(run_dir), *forwarded, *changes], debug)
            return
        train_and_report(spec, quiet, world=world, run_dir=run_dir, resume=point)


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
        from optcli.compare.planning.files import check_file, check_structure

        # A file whose structure is wrong is answered before torch is imported (most of a check's time).
        check_structure(config, run_overrides(settings, device, out, max_steps))
        import_torch()
        import yaml

        from optcli.config.advice import advise
        from optcli.errors import ConfigError

        specs, outline = check_file(config, run_overrides(settings, device, out, max_steps))
        if strict and (warnings := advise(specs)[1]):
            raise ConfigError([f"(--strict) {warning}" for warning in warnings])
        warnings = print_advice(specs)
        from optcli.config.side_by_side import arms_side_by_side

        if not resolved:  # (--resolved prints YAML alone, for tools to read)
            for line in arms_side_by_side(specs):  # a compare file: what each arm runs, differences marked
                print(line)
        ran = sorted({file for spec in specs.values() for file in spec.user_files()})
        if ran:  # a config can run code: say whose
            print(f"note: checking ran code from {', '.join(ran)} (importing and building, as training will)")
        if resolved:
            shown = specs[""].resolved if "" in specs else {arm: spec.resolved for arm, spec in specs.items()}
            print(yaml.safe_dump(shown, sort_keys=False), end="")
        print(f"ok: {config}: {outline}" + (f"; {len(warnings)} warning(s)" if warnings else ""))


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
        import_torch()
        from optcli.compare.planning.files import check_file
        from optcli.config.schedule import describe_schedule, save_schedule_png, summarize, text_plot
        from optcli.train.rundir import replace_atomically

        specs, _ = check_file(config, run_overrides(settings, None, None, max_steps))
        if "" not in specs:
            fail(f"{config}: a compare file; give one arm's config to see its schedule", EXIT_CONFIG)
        spec = specs[""]
        if csv is None:
            summary = summarize(spec)
        else:  # streamed to the file as the walk passes; the whole file or none of it
            walked = []
            replace_atomically(csv, lambda stream: walked.append(summarize(spec, stream)))
            summary = walked[0]
        lines = describe_schedule(spec, summary)
        print("\n".join([lines[0], *text_plot(summary.plot_values, spec.total_steps), *lines[1:]]))
        if png is not None:
            save_schedule_png(png, summary, spec.name)


@app.command("find-lr")
def find_lr(
    config: ConfigArgument,
    settings: SetOption = None,
    start_lr: Annotated[float, typer.Option(help="The first rate tried.")] = 1e-7,
    end_lr: Annotated[float, typer.Option(help="The last rate tried.")] = 10.0,
    steps: Annotated[int, typer.Option(help="Mini-batches, the rate growing exponentially.")] = 100,
    out: Annotated[Path | None, typer.Option(help="Write lr_find.csv and lr_find.png here.")] = None,
    apply: Annotated[
        Path | None, typer.Option(help="Write a copy of the config with the suggested optimizer.lr.")
    ] = None,
    debug: DebugOption = False,
) -> None:
    """Find a learning rate that will not diverge: the LR range test on the config's model and data.

    The model is never trained by this: no run directory of yours changes. Example:
    optcli find-lr configs/teacher_mlp.yaml --apply teacher_tuned.yaml
    """
    with reported_errors(debug):
        import_torch()
        from optcli.config.loading import load_config
        from optcli.config.resolve import resolve_config
        from optcli.errors import ConfigError
        from optcli.train.lr_finder import range_test, suggest, suggested_settings, write_range_test
        from optcli.train.rundir import create_run_dir

        spec = resolve_config(load_config(config, run_overrides(settings, None, None, None)))
        tested, stopped = range_test(spec, start_lr, end_lr, steps)
        suggestion = suggest(tested)
        directory = out or create_run_dir(Path(spec.output.dir), spec.name, prefix="lr_find-")
        directory.mkdir(parents=True, exist_ok=True)
        write_range_test(directory, tested, suggestion, spec.name)
        print(f"range test: {len(tested)} steps from {start_lr:g}, stopped because {stopped}")
        steepest = f"{suggestion.steepest:.2e}" if suggestion.steepest else "-"
        tenth = f"{suggestion.minimum_tenth:.2e}" if suggestion.minimum_tenth else "-"
        print(f"steepest descent of the smoothed loss: {steepest}; minimum / 10: {tenth}")
        if suggestion.lr is None:
            fail(f"no suggestion: {suggestion.why}", EXIT_FAILED)
        suggested = suggested_settings(spec, suggestion.lr)
        if spec.parts:
            first = spec.parts[0].name
            print(
                "every part's rate was scaled by one factor, keeping their ratios; the rates below are "
                f"{first}'s (the first part's)"
            )
        listed = ", ".join(f"{key}: {value:.2e}" for key, value in suggested.items())
        print(f"suggested {listed} ({suggestion.why})")
        if apply is not None:
            from optcli.config.loading import write_with_overrides

            write_with_overrides(config, apply, [f"{key}={value!r}" for key, value in suggested.items()])
            try:  # paths in a config are relative to its own folder: the copy must still find them
                resolve_config(load_config(apply))
            except ConfigError as error:
                apply.unlink()
                raise ConfigError(
                    [
                        f"--apply: {apply} would not work where it is: {error.problems[0]}",
                        f"the config names files relative to its own folder ({config.resolve().parent}); "
                        "write the copy there",
                    ]
                ) from None
            print(f"wrote {apply} with {listed} (the config's comments are not copied)")
        print(f"-> {directory}")
