"""The config file: loading it, applying `--set`, and the schema of the sections optcli owns.

Sections that name a class (model, data, loss, optimizer, scheduler) hold that class's keyword
arguments verbatim and are checked against its signature in `resolve.py`; the rest are fixed
pydantic models here.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from optcli.config.overrides import apply_overrides
from optcli.config.yaml_loader import load_yaml_mapping
from optcli.names import did_you_mean


class Strict(BaseModel):
    # strict: `epochs: "5"` is a mistake to report, not a string to coerce.
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class ClipConfig(Strict):
    """`{max_norm, norm_type}` -> clip_grad_norm_; `{value}` -> clip_grad_value_."""

    max_norm: float | None = Field(None, gt=0)
    norm_type: float = Field(2.0, gt=0)
    value: float | None = Field(None, gt=0)

    @model_validator(mode="after")
    def _one_kind(self) -> ClipConfig:
        if (self.max_norm is None) == (self.value is None):
            raise ValueError("give either max_norm (clip_grad_norm_) or value (clip_grad_value_)")
        if self.value is not None and "norm_type" in self.model_fields_set:
            raise ValueError("norm_type applies to max_norm only")
        return self


class EarlyStoppingConfig(Strict):
    """Stop when `monitor` has not improved by more than `min_delta` for `patience` epochs."""

    monitor: str | None = None  # default: val_loss with validation data, else train_loss
    patience: int = Field(5, ge=1)
    min_delta: float = Field(0.0, ge=0)
    mode: Literal["min", "max"] | None = None  # default: max for an accuracy, min for a loss


class TrainConfig(Strict):
    epochs: int = Field(10, ge=1)
    max_steps: int | None = Field(None, ge=1)  # stop after this many optimizer steps
    log_every: int = Field(1, ge=1)  # optimizer steps between rows of metrics.csv
    eval_every: int | None = Field(None, ge=1)  # optimizer steps between evaluations, besides epoch ends
    early_stopping: EarlyStoppingConfig | None = None
    checkpoint_every: int = Field(1, ge=0)  # epochs between checkpoints/last.pt; 0: none
    on_nonfinite: Literal["stop", "skip"] = "stop"  # a non-finite loss or gradient norm
    max_skips: int = Field(10, ge=1)  # with skip: stop after this many skipped steps in a row


class OutputConfig(Strict):
    dir: str = "runs"


class LoaderConfig(Strict):
    """The data section's own keys (batching, the validation split, normalization); its other keys
    belong to the dataset, and `val:` / `test:` are dataset mappings of their own."""

    batch_size: int = Field(64, ge=1)
    shuffle: bool = True
    drop_last: bool = False
    val_fraction: float | None = Field(None, gt=0, lt=1)  # a seeded random part of the training data
    normalize: bool = False  # standardize features with the training split's mean and std


class SchedulerOptions(Strict):
    """The scheduler section's own keys; its other keys belong to the scheduler class."""

    interval: Literal["epoch", "step"] | None = None
    monitor: str | None = None


class TopLevel(Strict):
    name: str | None = Field(None, min_length=1)
    seed: int = Field(0, ge=0, lt=2**32)
    device: str = "auto"
    deterministic: bool = False  # torch.use_deterministic_algorithms, and what CUDA needs for it
    # Each section is checked on its own (so that its errors carry its name): here only presence.
    model: Any
    data: Any
    loss: Any = None
    optimizer: Any
    scheduler: Any = None
    clip: Any = None
    train: Any = None
    output: Any = None


SECTION_HELP = {
    "model": "the network to train, e.g. model: {name: mlp, hidden: [128]}",
    "data": "the training data, e.g. data: {name: random, batch_size: 64}",
    "optimizer": "the optimizer, e.g. optimizer: {name: adam, lr: 1e-3}",
}


@dataclass(frozen=True)
class RawConfig:
    """A config mapping with `--set` applied, and where it came from (for relative paths and the name)."""

    values: dict[str, Any]
    base_dir: Path
    default_name: str


def load_config(path: Path, overrides: list[str] | None = None) -> RawConfig:
    """Read a config file and apply `--set KEY=VALUE` overrides; nothing is validated yet."""
    values = apply_overrides(load_yaml_mapping(path), overrides or [])
    return RawConfig(values, path.resolve().parent, path.stem)


def validate_model(schema: type[Strict], values: Any, where: str) -> tuple[Any, list[str]]:
    """Validate one fixed section; return it (or None) and its problems, one line each."""
    try:
        return schema.model_validate(values if values is not None else {}), []
    except ValidationError as error:
        return None, [_describe_error(detail, schema, where) for detail in error.errors()]


def _describe_error(detail: Any, schema: type[BaseModel], where: str) -> str:
    location = ".".join(str(part) for part in (where, *detail["loc"]) if part != "")
    key = str(detail["loc"][-1]) if detail["loc"] else ""
    kind = detail["type"]
    if kind == "extra_forbidden":
        fields = list(schema.model_fields)
        return f"{location}: unknown key{did_you_mean(key, fields)}; expected one of: {', '.join(fields)}"
    if kind == "missing":
        help_text = SECTION_HELP.get(key)
        return f"{location}: required" + (f": {help_text}" if help_text else "")
    message = detail["msg"].removeprefix("Value error, ").replace("Input should be", "must be")
    message = message[:1].lower() + message[1:]
    if kind.endswith("_type") or kind.startswith(("greater", "less", "literal")):
        return f"{location}: {message}, got {detail['input']!r}"
    return f"{location}: {message}"
