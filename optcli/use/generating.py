"""What a trained language model says: `optcli generate` (text continued from a prompt, sampled from
a seeded generator so that a seed repeats it) and `optcli predict` on text (the most likely next token
after each line, and its probability).

A model of a text run takes token ids [1, T] (T at most the data's block_size) and returns logits
[1, T, vocabulary]; longer contexts are cut to their last block_size tokens, as nanoGPT's sampler does.
"""

from __future__ import annotations

from pathlib import Path
from typing import BinaryIO

import torch

from optcli.components.forward import pick_output
from optcli.data.text import decode, encode
from optcli.errors import ConfigError
from optcli.train.rundir import replace_atomically
from optcli.use.predicting import csv_cell
from optcli.use.trained import TrainedRun


def text_run(trained: TrainedRun) -> tuple[str, int]:
    """The run's tokenizer and context length; a run not trained on text is a ConfigError."""
    info = trained.spec.data.info
    if info.tokenizer is None or info.sequence_length is None:
        raise ConfigError(
            f"RUN: {trained.run_dir} was not trained on text (data: {trained.spec.data.name}); generate needs "
            "a language model (data.name: text)"
        )
    return info.tokenizer, info.sequence_length


def next_token_logits(model: torch.nn.Module, trained: TrainedRun, context: torch.Tensor) -> torch.Tensor:
    """The logits of the token after `context` [1, T]."""
    output = pick_output(model(context), trained.spec.model_output)
    if not isinstance(output, torch.Tensor) or output.dim() != 3:
        raise ConfigError(
            "the model does not return logits [batch, time, vocabulary]; set model.output in the run's config to "
            "the output that does"
        )
    return output[0, -1]


def generate(
    trained: TrainedRun,
    prompt: str,
    tokens: int,
    *,
    temperature: float = 1.0,
    top_k: int | None = None,
    seed: int = 0,
    device: torch.device | str = "cpu",
) -> str:
    """`tokens` tokens after `prompt`, as text. Temperature 0 takes the most likely token each time."""
    tokenizer, block_size = text_run(trained)
    if temperature < 0:
        raise ConfigError(f"--temperature: must be 0 or more, got {temperature}")
    ids = encode(prompt, tokenizer) or encode("\n", tokenizer)  # (an empty prompt starts a line)
    model = trained.build_model(device).eval()
    generator = torch.Generator(device).manual_seed(seed)
    context = torch.tensor([ids], device=device)
    produced: list[int] = []
    with torch.no_grad():
        for _ in range(tokens):
            logits = next_token_logits(model, trained, context[:, -block_size:]).double()
            if temperature == 0:
                chosen = logits.argmax()
            else:
                logits = logits / temperature
                if top_k is not None and top_k < len(logits):
                    threshold = logits.topk(top_k).values[-1]
                    logits = logits.masked_fill(logits < threshold, float("-inf"))
                chosen = torch.multinomial(torch.softmax(logits, dim=0), 1, generator=generator)[0]
            context = torch.cat([context, chosen.view(1, 1)], dim=1)
            produced.append(int(chosen))
    return decode(produced, tokenizer)


def predict_text(trained: TrainedRun, source: Path, out: Path, device: torch.device | str = "cpu") -> int:
    """For each non-empty line of `source`: the most likely next token and its probability, as CSV
    rows `input,prediction,probability`. Written whole or not at all; the rows written."""
    tokenizer, block_size = text_run(trained)
    try:
        lines = [line for line in source.read_text(encoding="utf-8").splitlines() if line]
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"INPUT: cannot read {source} as UTF-8 text: {error}") from None
    if not lines:
        raise ConfigError(f"INPUT: {source} has no lines to predict from")
    model = trained.build_model(device).eval()

    def write(stream: BinaryIO) -> None:
        stream.write(b"input,prediction,probability\n")
        with torch.no_grad():
            for line in lines:
                context = torch.tensor([encode(line, tokenizer)[-block_size:]], device=device)
                probabilities = torch.softmax(next_token_logits(model, trained, context).double(), dim=0)
                chosen = int(probabilities.argmax())
                cells = (
                    csv_cell(line),
                    csv_cell(decode([chosen], tokenizer)),
                    repr(float(probabilities[chosen])),
                )
                stream.write((",".join(cells) + "\n").encode())

    replace_atomically(out, write)
    return len(lines)
