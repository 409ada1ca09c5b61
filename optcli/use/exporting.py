"""`optcli export`: a trained run's model in a format other tools run, checked before it is written.

- `torchscript`: `torch.jit.trace` (`.pt`, loaded by `torch.jit.load`, no Python class needed).
- `exported`: `torch.export` (an ExportedProgram, `.pt2`, loaded by `torch.export.load`).
- `onnx`: torch's ONNX exporter (`.onnx`), with a dynamic batch dimension; checked through onnxruntime.
- `safetensors`: the bare weights (`.safetensors`), for code that builds the model itself.

Each is traced on two samples of the run's own data, serialised in memory, loaded back from those
bytes and run on a real batch of another size against the eager model; the largest difference is
reported and recorded. Only then are the bytes written, atomically, by optcli's own writer: torch's
file writer aborts the process (SIGABRT) when a disk fills under it, and a failed write must name the
file, not blame the format. `model.json` beside it says what a deployment needs: the input's shape and dtype, the
outputs, the class names, the preprocessing, the checkpoint's metrics, the config's hash.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import re
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from optcli import __version__
from optcli.components.forward import pick_output
from optcli.errors import ConfigError, ExportFailed
from optcli.extras import install_command, missing
from optcli.train.rundir import replace_atomically
from optcli.use.trained import TrainedRun

SUFFIXES = {"torchscript": ".pt", "exported": ".pt2", "onnx": ".onnx", "safetensors": ".safetensors"}
EXTRA_OF_FORMAT = {"onnx": "onnx", "safetensors": "safetensors"}  # the optcli extra a format needs
TRACED_SAMPLES = 2  # the example an export is traced on; the check runs a batch of another size


@dataclass(frozen=True)
class Exported:
    path: Path
    card: Path  # model.json
    difference: float  # the largest absolute difference from the eager model on the check batch
    checked_samples: int


class _Judged(torch.nn.Module):
    """The run's model as deployed: inputs in, what the run judged (`model.output`) out."""

    def __init__(self, model: torch.nn.Module, key: str | int | None) -> None:
        super().__init__()
        self.model, self.key = model, key

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return pick_output(self.model(inputs), self.key)  # type: ignore[no-any-return]


def require_extra(form: str) -> None:
    """A format whose packages are missing: which extra installs them (exit 2)."""
    extra = EXTRA_OF_FORMAT.get(form)
    if extra is not None and (absent := missing(extra)):
        raise ConfigError(f"--format {form} needs {', '.join(absent)}: {install_command(extra)}")


def export(
    trained: TrainedRun, form: str, out: Path | None, example: torch.Tensor, metrics: dict[str, float]
) -> Exported:
    """Export, check and write the model in `form`; an ExportFailed names the reason and the formats
    that do work for this model."""
    require_extra(form)
    path = out or trained.run_dir / "export" / form / f"model{SUFFIXES[form]}"
    if out is None:  # inside the run, as a resume: never through a link, which would write outside it
        linked = [folder for folder in (path.parent.parent, path.parent) if folder.is_symlink()]
        if linked:
            raise ConfigError(
                f"{linked[0]}: a symbolic link; optcli never writes a run's files through one (remove it, "
                "or give --out)"
            )
    path.parent.mkdir(parents=True, exist_ok=True)
    module = _Judged(trained.build_model("cpu"), trained.spec.model_output).eval()
    traced, check = _examples(example)
    with torch.no_grad():
        expected = _as_tensor(module(check), form)
    try:
        with _quiet():
            written = WRITERS[form](module, traced, trained)
            produced = READERS[form](written, trained)(check)
    except Exception as error:
        working = [
            other for other in SUFFIXES if other != form and _works(other, module, traced, check, trained)
        ]
        suggestion = f"; formats that work for this model: {', '.join(working)}" if working else ""
        raise ExportFailed(
            f"--format {form}: the model cannot be exported: {_reason(error)}{suggestion}"
        ) from None
    difference = float((produced.to(torch.float64) - expected.to(torch.float64)).abs().max())
    card = _card(trained, form, path, traced, expected, metrics, difference, len(check))
    replace_atomically(path, lambda stream: stream.write(written))
    card_path = path.with_name("model.json")
    replace_atomically(card_path, lambda stream: stream.write((json.dumps(card, indent=2) + "\n").encode()))
    return Exported(path, card_path, difference, len(check))


def _examples(batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Two samples to trace on, and a batch of another size to check with (real samples, repeated
    where the data has fewer)."""
    while len(batch) <= TRACED_SAMPLES:
        batch = torch.cat([batch, batch])
    return batch[:TRACED_SAMPLES], batch[: min(len(batch), 64)]


def _as_tensor(output: Any, form: str) -> torch.Tensor:
    if not isinstance(output, torch.Tensor):
        raise ExportFailed(
            f"--format {form}: the model returns a {type(output).__name__}, not a tensor; set model.output in "
            "the run's config to the output a deployment uses"
        )
    return output


def _works(
    form: str, module: torch.nn.Module, traced: torch.Tensor, check: torch.Tensor, trained: TrainedRun
) -> bool:
    try:
        require_extra(form)
        with _quiet():
            READERS[form](WRITERS[form](module, traced, trained), trained)(check)
        return True
    except Exception:
        return False


def _reason(error: BaseException) -> str:
    """The first line of the error at the root of the chain (an exporter wraps the cause in steps)."""
    while error.__cause__ is not None:
        error = error.__cause__
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(error)).strip()
    return f"{type(error).__name__}: {text.splitlines()[0] if text else ''}".rstrip(": ")


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """The exporters' progress lines, logs (torch.export logs a graph it cannot export) and warnings
    are theirs, not the user's."""
    logging.disable(logging.CRITICAL)
    try:
        with (
            warnings.catch_warnings(),
            contextlib.redirect_stdout(io.StringIO()),
            contextlib.redirect_stderr(io.StringIO()),
        ):
            warnings.simplefilter("ignore")
            yield
    finally:
        logging.disable(logging.NOTSET)


def _batch_dimension() -> Any:
    return torch.export.Dim("batch")


def _write_torchscript(module: torch.nn.Module, example: torch.Tensor, trained: TrainedRun) -> bytes:
    with warnings.catch_warnings():
        # A trace records one path through the code: a warning that the path depends on the values
        # (or the batch size) means it would be wrong for other inputs, so it is a failure.
        warnings.simplefilter("error", torch.jit.TracerWarning)
        traced = torch.jit.trace(module, example, check_trace=False)
    buffer = io.BytesIO()
    torch.jit.save(traced, buffer)
    return buffer.getvalue()


def _read_torchscript(written: bytes, trained: TrainedRun) -> Callable[[torch.Tensor], torch.Tensor]:
    loaded = torch.jit.load(io.BytesIO(written), map_location="cpu")
    return lambda inputs: loaded(inputs).detach()


def _write_exported(module: torch.nn.Module, example: torch.Tensor, trained: TrainedRun) -> bytes:
    program = torch.export.export(module, (example,), dynamic_shapes=({0: _batch_dimension()},))
    buffer = io.BytesIO()
    torch.export.save(program, buffer)
    return buffer.getvalue()


def _read_exported(written: bytes, trained: TrainedRun) -> Callable[[torch.Tensor], torch.Tensor]:
    loaded = torch.export.load(io.BytesIO(written)).module()
    return lambda inputs: loaded(inputs).detach()


def _write_onnx(module: torch.nn.Module, example: torch.Tensor, trained: TrainedRun) -> bytes:
    program = torch.onnx.export(
        module,
        (example,),
        input_names=["inputs"],
        output_names=["outputs"],
        dynamic_shapes=({0: _batch_dimension()},),
        dynamo=True,
        verbose=False,
    )
    assert program is not None  # (dynamo=True always returns the program)
    return program.model_proto.SerializeToString()  # the weights inside it, as external_data=False would


def _read_onnx(written: bytes, trained: TrainedRun) -> Callable[[torch.Tensor], torch.Tensor]:
    import onnxruntime

    session = onnxruntime.InferenceSession(written, providers=["CPUExecutionProvider"])
    return lambda inputs: torch.from_numpy(session.run(None, {"inputs": inputs.numpy()})[0])


def _write_safetensors(module: torch.nn.Module, example: torch.Tensor, trained: TrainedRun) -> bytes:
    from safetensors.torch import save

    weights = {key: value.contiguous() for key, value in module.model.state_dict().items()}  # type: ignore[union-attr]
    return save(weights, metadata={"config_hash": str(trained.summary.get("config_hash"))})


def _read_safetensors(written: bytes, trained: TrainedRun) -> Callable[[torch.Tensor], torch.Tensor]:
    from safetensors.torch import load

    model = trained.spec.model.build()
    model.load_state_dict(load(written))
    rebuilt = _Judged(model.eval(), trained.spec.model_output)

    def run(inputs: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return rebuilt(inputs)

    return run


# Each format's bytes, and a function that runs the model those bytes hold.
WRITERS: dict[str, Callable[[torch.nn.Module, torch.Tensor, TrainedRun], bytes]] = {
    "torchscript": _write_torchscript,
    "exported": _write_exported,
    "onnx": _write_onnx,
    "safetensors": _write_safetensors,
}
READERS: dict[str, Callable[[bytes, TrainedRun], Callable[[torch.Tensor], torch.Tensor]]] = {
    "torchscript": _read_torchscript,
    "exported": _read_exported,
    "onnx": _read_onnx,
    "safetensors": _read_safetensors,
}


def _card(
    trained: TrainedRun,
    form: str,
    path: Path,
    example: torch.Tensor,
    output: torch.Tensor,
    metrics: dict[str, float],
    difference: float,
    checked: int,
) -> dict[str, Any]:
    """model.json: what a user deploying the export needs, in one file."""
    normalization = trained.data.get("normalization")
    return {
        "file": path.name,
        "format": form,
        "input": {
            "name": "inputs",
            "shape": ["batch", *example.shape[1:]],
            "dtype": str(example.dtype).removeprefix("torch."),
        },
        "outputs": [
            {
                "name": "outputs",
                "shape": ["batch", *output.shape[1:]],
                "dtype": str(output.dtype).removeprefix("torch."),
            }
        ],
        "task": "classification" if trained.spec.data.is_classification else "regression",
        "class_names": trained.class_names,
        "preprocessing": (
            {
                "normalize": True,
                "mean": normalization["mean"],
                "std": normalization["std"],
                "apply": "(inputs - mean) / std",
            }
            if normalization
            else {"normalize": False}
        ),
        "checkpoint": trained.checkpoint_name,
        "epoch": trained.epoch,
        "step": trained.step,
        "metrics": metrics,
        "check": {"samples": checked, "max_abs_difference": difference},
        "run": str(trained.run_dir),
        "config_hash": trained.summary.get("config_hash"),
        "optcli_version": __version__,
        "torch_version": torch.__version__,
    }
