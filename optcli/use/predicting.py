"""`optcli predict`: a trained run's outputs for new samples, one CSV row per sample in input order.

Classification: the predicted class's name and every class's probability (softmax over the outputs,
or the sigmoid of a single logit); regression: the value(s); with `model.output`, what the loss saw
of the model's output. A target column in the input is copied to the output as `target`. The
file is written whole or not at all; memory does not grow with the input.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

import torch

from optcli.components.forward import Forward, pick_output
from optcli.errors import ConfigError
from optcli.train.rundir import replace_atomically
from optcli.use.inputs import InputBatch
from optcli.use.trained import TrainedRun


def predict_to_csv(
    trained: TrainedRun,
    batches: Iterator[InputBatch],
    out: Path,
    device: torch.device,
    progress: Any = None,
) -> int:
    """Every batch through the model, every row to `out` as it comes; the rows written."""
    model = trained.build_model(device)
    forward = trained.spec.forward
    rows = 0

    def write(stream: BinaryIO) -> None:
        nonlocal rows
        header_written = False
        with torch.no_grad():
            for part in batches:
                outputs = _outputs(model, forward, trained, part, device)
                if not header_written:
                    stream.write(
                        (",".join(columns(trained, outputs, part.targets is not None)) + "\n").encode()
                    )
                    header_written = True
                stream.write("".join(lines(trained, outputs, part.targets)).encode())
                rows += part.size
                if progress is not None:
                    progress(part.size)
        if not header_written:
            raise ConfigError("INPUT: has no samples to predict")

    replace_atomically(out, write)
    return rows


def _outputs(
    model: torch.nn.Module, forward: Forward, trained: TrainedRun, part: InputBatch, device: torch.device
) -> torch.Tensor:
    batch = part.batch
    if forward.from_model and not isinstance(batch, dict):
        raise ConfigError(
            "the run's model computes its own loss from the targets (loss: from_model), so it cannot be "
            "called on inputs alone"
        )
    moved = (
        {key: value.to(device) for key, value in batch.items()}
        if isinstance(batch, dict)
        else (batch[0].to(device), None)
    )
    output, _ = forward.run_model(model, moved)
    judged = pick_output(output, trained.spec.model_output)
    if not isinstance(judged, torch.Tensor):
        raise ConfigError(
            f"the model returns a {type(judged).__name__}, not a tensor; set model.output in the run's config to "
            "the output to predict with"
        )
    return judged.detach().to("cpu", torch.float64).reshape(part.size, -1)


def _is_binary(trained: TrainedRun, outputs: torch.Tensor) -> bool:
    return trained.spec.data.is_classification and outputs.shape[1] == 1


def class_names(trained: TrainedRun, outputs: torch.Tensor) -> list[str]:
    count = 2 if _is_binary(trained, outputs) else outputs.shape[1]
    return trained.class_names or [str(index) for index in range(count)]


def columns(trained: TrainedRun, outputs: torch.Tensor, has_target: bool) -> list[str]:
    if trained.spec.data.is_classification:
        names = ["prediction", *(f"p_{name}" for name in class_names(trained, outputs))]
    elif outputs.shape[1] == 1:
        names = ["prediction"]
    else:
        names = [f"prediction_{index}" for index in range(outputs.shape[1])]
    return [*names, "target"] if has_target else names


def lines(trained: TrainedRun, outputs: torch.Tensor, targets: list[str] | None) -> list[str]:
    """A batch's rows: probabilities and values in full precision (repr round-trips)."""
    if trained.spec.data.is_classification:
        names = class_names(trained, outputs)
        if _is_binary(trained, outputs):
            positive = torch.sigmoid(outputs[:, 0])
            probabilities = torch.stack([1 - positive, positive], dim=1)
            chosen = (outputs[:, 0] > 0).long()  # as accuracy judges one logit
        else:
            probabilities = torch.softmax(outputs, dim=1)
            chosen = outputs.argmax(dim=1)
        cells = [
            [csv_cell(names[index]), *map(repr, row)]
            for index, row in zip(chosen.tolist(), probabilities.tolist(), strict=True)
        ]
    else:
        cells = [list(map(repr, row)) for row in outputs.tolist()]
    if targets is not None:
        cells = [[*row, csv_cell(target)] for row, target in zip(cells, targets, strict=True)]
    return [",".join(row) + "\n" for row in cells]


def csv_cell(text: str) -> str:
    """Text as one CSV cell: quoted (its quotes doubled) where it holds a comma, a quote or a line end."""
    return f'"{text.replace(chr(34), chr(34) * 2)}"' if any(mark in text for mark in ',"\n\r') else text
