"""The commands that use a trained run: predict, generate, evaluate and export."""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Literal

import typer

from optcli.cli.shared import DebugOption, SetOption, app, reported_errors
from optcli.process.torch_import import import_torch

RunArgument = Annotated[
    Path, typer.Argument(metavar="RUN", help="A run directory, or a folder of one name's runs (its newest).")
]
CheckpointOption = Annotated[
    str, typer.Option("--checkpoint", help="best (the scored best weights) or last.", case_sensitive=False)
]
UseDeviceOption = Annotated[str, typer.Option("--device", help="cpu, cuda, cuda:N or mps.")]


def _checkpoint(name: str) -> Literal["best", "last"]:
    from optcli.errors import ConfigError

    if name not in ("best", "last"):
        raise ConfigError(f"--checkpoint: best or last, not '{name}'")
    return "best" if name == "best" else "last"


@app.command()
def predict(
    run: RunArgument,
    input_: Annotated[
        str,
        typer.Argument(
            metavar="INPUT",
            help="A CSV table, a .pt/.npz file with x, or a Dataset of yours as file.py:callable.",
        ),
    ],
    checkpoint: CheckpointOption = "best",
    out: Annotated[Path, typer.Option("--out", help="The predictions' CSV file.")] = Path("predictions.csv"),
    batch_size: Annotated[int | None, typer.Option("--batch-size", min=1, help="Samples per batch.")] = None,
    device: UseDeviceOption = "cpu",
    settings: SetOption = None,
    debug: DebugOption = False,
) -> None:
    """Predict with a trained run: one row per input sample, in input order, preprocessed as the run was.

    Example: optcli predict runs/fruit_csv new_fruit.csv --out predictions.csv
    """
    with reported_errors(debug):
        import_torch()
        import torch

        from optcli.errors import ConfigError
        from optcli.train.session import EVALUATION_BATCH_SIZE
        from optcli.use.inputs import dataset_input, input_batches, is_dataset_input
        from optcli.use.predicting import predict_to_csv
        from optcli.use.trained import open_run

        trained = open_run(run, _checkpoint(checkpoint))
        if trained.spec.data.info.tokenizer is not None:  # a language model: the next token of each line
            from optcli.use.generating import predict_text

            rows = predict_text(trained, Path(input_), out, torch.device(device))
            print(
                f"{rows} next-token predictions from {trained.run_dir} ({trained.checkpoint_name}.pt) -> {out}"
            )
            return
        if settings and not is_dataset_input(input_):
            raise ConfigError(
                f"--set {settings[0]}: sets a Dataset input's arguments (INPUT a `file.py:Dataset`); a file "
                "INPUT is read as the run's data was, so there is nothing to set"
            )
        dataset = dataset_input(trained, input_, settings or []) if is_dataset_input(input_) else None
        size = batch_size or max(trained.spec.data.loader.batch_size, EVALUATION_BATCH_SIZE)
        with _progress("predicting") as advance:
            rows = predict_to_csv(
                trained, input_batches(trained, input_, size, dataset), out, torch.device(device), advance
            )
        print(
            f"{rows} predictions from {trained.run_dir} ({trained.checkpoint_name}.pt, epoch {trained.epoch}) -> {out}"
        )


@app.command()
def generate(
    run: RunArgument,
    prompt: Annotated[str, typer.Option("--prompt", help="The text to continue.")] = "",
    tokens: Annotated[int, typer.Option("--tokens", min=1, help="How many tokens to generate.")] = 200,
    temperature: Annotated[
        float,
        typer.Option(
            "--temperature", min=0.0, help="Sharpens (<1) or flattens (>1); 0: always the likeliest."
        ),
    ] = 1.0,
    top_k: Annotated[
        int | None, typer.Option("--top-k", min=1, help="Sample from the k likeliest tokens only.")
    ] = None,
    seed: Annotated[int, typer.Option("--seed", help="The sampling's seed: a seed repeats its text.")] = 0,
    checkpoint: CheckpointOption = "best",
    device: UseDeviceOption = "cpu",
    debug: DebugOption = False,
) -> None:
    """Continue a prompt with a trained language model (a run on text data); seeded, so repeatable.

    Example: optcli generate runs/lm_stdlib --prompt "def " --tokens 200 --top-k 20
    """
    with reported_errors(debug):
        import_torch()
        from optcli.use.generating import generate as continue_text
        from optcli.use.trained import open_run

        trained = open_run(run, _checkpoint(checkpoint))
        text = continue_text(
            trained, prompt, tokens, temperature=temperature, top_k=top_k, seed=seed, device=device
        )
        print(prompt + text)


@app.command("evaluate")
def evaluate_command(
    run: RunArgument,
    data: Annotated[
        Path | None,
        typer.Argument(metavar="[DATA]", help="New data in the run's data format (else its own split)."),
    ] = None,
    checkpoint: CheckpointOption = "best",
    split: Annotated[
        str, typer.Option("--split", help="val or test: the run's own split to evaluate on.")
    ] = "val",
    out: Annotated[Path, typer.Option("--out", help="The metrics as JSON.")] = Path("evaluation.json"),
    settings: SetOption = None,
    debug: DebugOption = False,
) -> None:
    """A checkpoint's metrics on the run's validation or test data, or on new data.

    Example: optcli evaluate runs/fruit_csv --checkpoint last
    """
    with reported_errors(debug):
        import_torch()
        from optcli.errors import ConfigError
        from optcli.metrics.table import format_metric
        from optcli.train.rundir import write_atomically
        from optcli.use.evaluating import evaluate_checkpoint, evaluation_record, new_data_overrides
        from optcli.use.trained import open_run

        if split not in ("val", "test"):
            raise ConfigError(f"--split: val or test, not '{split}'")
        overrides = list(settings or []) + (new_data_overrides(data) if data is not None else [])
        if any(setting.startswith("metrics=") for setting in overrides):
            # Other metrics than the run's: what it monitored while training may not be among them.
            overrides += ["train.monitor=null", "train.early_stopping=null"]
        trained = open_run(run, _checkpoint(checkpoint), overrides)
        measured = evaluate_checkpoint(trained, "test" if data is not None or split == "test" else "val")
        what = (
            str(data) if data is not None else f"the run's {'validation' if split == 'val' else 'test'} data"
        )
        shown = ", ".join(
            f"{name} {format_metric(name, value, trained.spec.metrics, digits=6)}"
            for name, value in measured.values.items()
        )
        print(f"{trained.checkpoint_name}.pt (epoch {trained.epoch}) on {what}: {shown}")
        for name, rows in measured.tables.items():
            print(f"{name} (a row per true class, a column per predicted class):")
            print("\n".join("  " + " ".join(f"{count:>6}" for count in row) for row in rows))
        record = evaluation_record(trained, str(data) if data is not None else split, measured)
        write_atomically(out, json.dumps(record, indent=2) + "\n")
        print(f"-> {out}")


class ExportFormat(StrEnum):
    # (use/exporting.py's SUFFIXES holds each one's file; tests/test_cli.py checks that they agree)
    torchscript = "torchscript"
    exported = "exported"
    onnx = "onnx"
    safetensors = "safetensors"


@app.command("export")
def export_command(
    run: RunArgument,
    form: Annotated[
        ExportFormat,
        typer.Option("--format", help="torchscript, exported (torch.export .pt2), onnx or safetensors."),
    ],
    checkpoint: CheckpointOption = "best",
    out: Annotated[
        Path | None, typer.Option("--out", help="The file (default RUN/export/FORMAT/model.*).")
    ] = None,
    debug: DebugOption = False,
) -> None:
    """Export a trained model, checked against the eager model on the run's data, with model.json beside it.

    Example: optcli export runs/fruit_csv --format onnx
    """
    with reported_errors(debug):
        import_torch()
        from optcli.use.evaluating import evaluate_checkpoint, first_inputs, scored_session
        from optcli.use.exporting import export, require_extra
        from optcli.use.trained import open_run

        require_extra(form.value)
        trained = open_run(run, _checkpoint(checkpoint))
        session = scored_session(trained)
        metrics = {}
        for split in ("val", "test"):
            if (session.val_batches if split == "val" else session.test_batches) is not None:
                found = evaluate_checkpoint(trained, split, session)
                metrics.update({f"{split}_{name}": value for name, value in found.values.items()})
        exported = export(trained, form.value, out, first_inputs(session), metrics)
        print(
            f"{form.value}: {exported.path}, checked on {exported.checked_samples} samples of the run's data: largest "
            f"difference from the model {exported.difference:.3g}"
        )
        print(f"-> {exported.card}")


def _progress(what: str):  # type: ignore[no-untyped-def]
    """A progress line on a terminal's stderr (rows done), nothing elsewhere."""
    import contextlib

    from rich.console import Console
    from rich.progress import Progress, SpinnerColumn, TextColumn

    console = Console(stderr=True)
    if not console.is_terminal:
        return contextlib.nullcontext(None)

    @contextlib.contextmanager
    def shown():  # type: ignore[no-untyped-def]
        with Progress(
            SpinnerColumn(),
            TextColumn(f"{what}: {{task.completed:,}} samples"),
            console=console,
            transient=True,
        ) as progress:
            task = progress.add_task(what, total=None)
            yield lambda count: progress.advance(task, count)

    return shown()
