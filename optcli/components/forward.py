"""How one batch becomes a loss: the model's call for the kind of batch, and what the loss sees.

- `(inputs, targets)` pairs: `loss(model(inputs), targets)`.
- dict batches (the Hugging Face convention): `model(**batch)` without `labels`, and `labels` are the
  targets.
- `loss: from_model`, where the model computes its own loss: `model(**batch)` (labels included) or
  `model(inputs, targets)`, and the loss is what it returns: a tensor, `output["loss"]` or `output.loss`.
`model.output` picks what the loss (or, with from_model, the accuracy) sees of a dict, tuple or object.

Sequences (`sequence`: the targets are a class per position, as a language model's next tokens):
logits [B, T, V] with targets [B, T] reach the loss flattened to [B·T, V] and [B·T], as nanoGPT
computes `F.cross_entropy(logits.view(-1, V), targets.view(-1))`; torch's own layout [B, V, T]
passes as it is.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

TARGET_KEY = "labels"  # a dict batch's targets


class ModelLoss(torch.nn.Module):
    """`loss: from_model`: the loss the model returned, taken out of its output."""

    def forward(self, output: Any) -> torch.Tensor:
        if isinstance(output, torch.Tensor):
            return output
        loss = output.get("loss") if isinstance(output, dict) else getattr(output, "loss", None)
        if not isinstance(loss, torch.Tensor):
            found = list(output) if isinstance(output, dict) else type(output).__name__
            raise TypeError(f"the model returned no loss: no tensor, no 'loss' key or attribute ({found})")
        return loss


def pick_output(output: Any, key: str | int | None) -> Any:
    """What the loss sees of a model's output: all of it, or `model.output`'s key, attribute or item."""
    if key is None:
        return output
    if isinstance(key, int) or isinstance(output, dict):
        return output[key]
    return getattr(output, key)


@dataclass(frozen=True)
class Forward:
    """The forward pass and the loss for a run's kind of batch and loss."""

    output_key: str | int | None = None
    from_model: bool = False  # the loss is a ModelLoss
    sequence: bool = False  # a class per position: classes-last logits are flattened for the loss
    # A causal LM computing its own loss from `labels` shifts them itself: its logit t is judged
    # against label t + 1 by the metrics too (token accuracy would otherwise be off by one).
    shift_labels: bool = False

    def __call__(
        self, model: torch.nn.Module, loss_function: torch.nn.Module, batch: Any
    ) -> tuple[torch.Tensor, Any, torch.Tensor | None]:
        """The batch's loss, the output that accuracy judges (None when there is none), the targets."""
        output, targets = self.run_model(model, batch)
        loss, judged = self.judge(loss_function, output, targets)
        if self.shift_labels and isinstance(judged, torch.Tensor) and targets is not None:
            judged, targets = judged[:, :-1], targets[:, 1:]
        return loss, judged, targets

    def run_model(self, model: torch.nn.Module, batch: Any) -> tuple[Any, torch.Tensor | None]:
        """What the model returns for the batch, and the batch's targets (None when it has none)."""
        if isinstance(batch, dict):
            if self.from_model:
                return model(**batch), batch.get(TARGET_KEY)
            return model(**{key: value for key, value in batch.items() if key != TARGET_KEY}), batch.get(
                TARGET_KEY
            )
        inputs, targets = batch
        return (model(inputs, targets) if self.from_model else model(inputs)), targets

    def judge(
        self, loss_function: torch.nn.Module, output: Any, targets: torch.Tensor | None
    ) -> tuple[torch.Tensor, Any]:
        """The loss of the model's output, and the part of it that accuracy judges (or None)."""
        if self.from_model:
            return loss_function(output), pick_output(
                output, self.output_key
            ) if self.output_key is not None else None
        judged = pick_output(output, self.output_key)
        if self.sequence and classes_last(judged, targets):
            return loss_function(judged.reshape(-1, judged.shape[-1]), targets.reshape(-1)), judged  # type: ignore[union-attr]
        return loss_function(judged, targets), judged


def classes_last(output: Any, targets: Any) -> bool:
    """Logits [..., classes] for targets [...] of two or more dimensions (a class per position)."""
    return (
        isinstance(output, torch.Tensor)
        and isinstance(targets, torch.Tensor)
        and targets.dim() >= 2
        and output.dim() == targets.dim() + 1
        and output.shape[:-1] == targets.shape
    )
