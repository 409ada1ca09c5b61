"""What a valid config file is: one pydantic model of everything in it.

Sections that name a class (model, data, loss, optimizer, scheduler) hold that class's keyword
arguments verbatim besides optcli's own keys (or under `args`); those arguments are bound to the
class's signature in `sections.py` (components/signature.py does the binding). Every other key is
typed here.
"""

from __future__ import annotations

import math
import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_core import PydanticCustomError

from optcli.name_matching import did_you_mean


class Strict(BaseModel):
    # strict: `epochs: "5"` is a mistake to report, not a string to coerce.
    # allow_inf_nan: `max_norm: .inf` (or 1e400, which YAML reads as inf) is a mistake too.
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, allow_inf_nan=False)


class NamedSection(BaseModel):
    """A section that names a class: `name` picks it; the keys optcli does not own are its arguments."""

    model_config = ConfigDict(extra="allow", strict=True, frozen=True)
    name: str = Field(min_length=1)
    # Arguments passed verbatim: for those whose names are optcli's own keys (`name`, `output`, ...),
    # e.g. torchvision.models:get_model takes `args: {name: resnet18, num_classes: 10}`.
    args: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _each_argument_once(self) -> NamedSection:
        twice = sorted(set(self.args or {}) & set(self.model_extra or {}))
        if twice:
            raise ValueError(f"{', '.join(twice)}: given both beside name and under args; give each once")
        return self

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        if value is None:  # `model:` with nothing after it
            raise PydanticCustomError("missing", "required")
        if isinstance(value, str):  # `optimizer: adam` is short for `{name: adam}`
            return {"name": value}
        if not isinstance(value, dict):
            raise PydanticCustomError("mapping_type", "expected a mapping with a name")
        return value

    @property
    def arguments(self) -> dict[str, Any]:
        """The class's keyword arguments, as the YAML gives them (beside `name`, and under `args`)."""
        return {**(self.model_extra or {}), **(self.args or {})}


class ModelSection(NamedSection):
    # What the loss sees of a model that returns more than a tensor: a key of a returned dict (or an
    # attribute of a returned object), or the index of an item of a returned tuple.
    output: str | int | None = None
    # Start from trained weights: a run directory (its best or last checkpoint) or a weights file (a
    # state dict or an optcli checkpoint), relative to the config file.
    init: str | None = None
    init_checkpoint: Literal["best", "last"] = "best"
    init_strict: bool = True  # false: missing and unexpected keys are reported, and the run goes on


class ParamGroupSection(BaseModel):
    """One parameter group: glob patterns on the model's parameter names, and the optimizer arguments
    that differ for the parameters they match (`{params: ["*.bias", "*norm*"], weight_decay: 0.0}`)."""

    model_config = ConfigDict(extra="allow", strict=True, frozen=True)
    params: str | list[str]

    @property
    def patterns(self) -> tuple[str, ...]:
        return (self.params,) if isinstance(self.params, str) else tuple(self.params)

    @property
    def arguments(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class SchedulerSection(NamedSection):
    interval: Literal["epoch", "step"] | None = None  # default: step for OneCycleLR and CyclicLR
    monitor: str | None = None  # the metric ReduceLROnPlateau follows
    schedulers: list[NamedSection] | None = None  # SequentialLR / ChainedScheduler's inner schedulers


class OneOptimizerSection(NamedSection):
    """One optimizer class: its arguments, and its parameter groups."""

    # The first group whose pattern a parameter's name matches takes it; the others stay in the
    # default group, with the section's own arguments.
    param_groups: list[ParamGroupSection] | None = None


# What a part's `params` may name besides glob patterns on parameter names (config/parts.py says
# which parameters each kind holds).
PARAMETER_KINDS = ("matrices", "embeddings", "head", "biases", "norms", "rest")


class PartSection(OneOptimizerSection):
    """One part of an optimizer split over the model (`optimizer.parts.<name>`): the parameters it
    takes, by kind or by name glob, and optionally a scheduler of its own."""

    params: str | list[str]
    scheduler: SchedulerSection | None = None

    @property
    def selectors(self) -> tuple[str, ...]:
        return (self.params,) if isinstance(self.params, str) else tuple(self.params)


class OptimizerSection(OneOptimizerSection):
    """The optimizer section: one optimizer (`name` and its arguments), or several, each over its own
    parameters (`parts`), which the loop sees as one."""

    name: str | None = Field(None, min_length=1)  # type: ignore[assignment]
    parts: dict[str, PartSection] | None = None

    @model_validator(mode="after")
    def _one_or_parts(self) -> OptimizerSection:
        if self.parts is None:
            if self.name is None:
                raise PydanticCustomError(
                    "missing_optimizer",
                    "give name (one optimizer, e.g. {name: adamw, lr: 0.001}) or parts (several, each over "
                    "its own parameters: see docs/configs.md)",
                )
            return self
        beside = sorted(
            {"name", "param_groups", "args"} & self.model_fields_set | set(self.model_extra or {})
        )
        if beside:
            raise ValueError(
                f"{', '.join(beside)}: beside parts, each part names its own optimizer and arguments; "
                "move them into a part"
            )
        if not self.parts:
            raise ValueError("parts: give at least one part")
        for part in self.parts:
            if not re.fullmatch(r"[A-Za-z0-9_]+", part):
                raise ValueError(
                    f"parts.{part}: a part's name is letters, digits and _ (it names CSV columns)"
                )
        return self


class LoaderOptions(Strict):
    """The data section's own keys: batching, the validation split, normalization, DataLoader options."""

    batch_size: int = Field(64, ge=1)
    shuffle: bool = True
    drop_last: bool = False
    val_fraction: float | None = Field(None, gt=0, lt=1)  # a seeded random part of the training data
    test_fraction: float | None = Field(None, gt=0, lt=1)  # another, disjoint from it: the test set
    normalize: bool = False  # standardize features with the training split's mean and std
    # DataLoader options, for a user's Dataset (in-memory data is indexed as whole tensors instead).
    num_workers: int = Field(0, ge=0)
    pin_memory: bool = False
    persistent_workers: bool = False
    prefetch_factor: int | None = Field(None, ge=1)


class DataSection(NamedSection, LoaderOptions):
    """The training dataset's name and arguments, how it is batched, and its validation and test data
    (dataset mappings of their own, inheriting the training dataset's arguments)."""

    model_config = ConfigDict(extra="allow", strict=True, frozen=True)
    val: dict[str, Any] | None = None
    test: dict[str, Any] | None = None

    @property
    def loader(self) -> LoaderOptions:
        return LoaderOptions(**{key: getattr(self, key) for key in LoaderOptions.model_fields})


# optcli's own keys in the sections that name a class: an argument of the class with one of these
# names goes under `args` (config.yaml records it there too).
SECTION_KEYS = frozenset(
    key
    for section in (ModelSection, OneOptimizerSection, DataSection, SchedulerSection)
    for key in section.model_fields
)


class ClipConfig(Strict):
    """`{max_norm, norm_type}` -> clip_grad_norm_; `{value}` -> clip_grad_value_."""

    max_norm: float | None = Field(None, gt=0)
    norm_type: float = Field(2.0, gt=0, allow_inf_nan=True)  # .inf: the largest gradient (nan: refused below)
    value: float | None = Field(None, gt=0)

    @model_validator(mode="after")
    def _one_kind(self) -> ClipConfig:
        if math.isnan(self.norm_type):
            raise ValueError("norm_type must be a number above 0, or .inf for the largest gradient")
        if (self.max_norm is None) == (self.value is None):
            raise ValueError("give either max_norm (clip_grad_norm_) or value (clip_grad_value_)")
        if self.value is not None and "norm_type" in self.model_fields_set:
            raise ValueError("norm_type applies to max_norm only")
        return self


class EarlyStoppingConfig(Strict):
    """Stop when `monitor` has not improved by more than `min_delta` for `patience` epochs."""

    monitor: str | None = None  # default: the run's default monitor (config/metrics.py)
    patience: int = Field(5, ge=1)
    min_delta: float = Field(0.0, ge=0)
    mode: Literal["min", "max"] | None = None  # default: max for an accuracy, min for a loss


class TrainConfig(Strict):
    epochs: int = Field(10, ge=1)
    max_steps: int | None = Field(None, ge=1)  # stop after this many optimizer steps
    log_every: int = Field(1, ge=1)  # optimizer steps between rows of metrics.csv
    eval_every: int | None = Field(None, ge=1)  # optimizer steps between evaluations, besides epoch ends
    # The metric that picks best.pt, and that early stopping and ReduceLROnPlateau follow unless they
    # name their own: val_loss with validation data, else train_loss; or any metric the run reports
    # (val_accuracy, val_f1_macro, ...), its direction the metric's own.
    monitor: str | None = None
    early_stopping: EarlyStoppingConfig | None = None
    # false: no checkpoint at all (the run cannot be resumed, and the test data judges the last weights)
    checkpoint: bool = True
    # Periodic checkpoints (checkpoints/last.pt) by time: "auto" keeps them under about 1% of the run's
    # time whatever its epochs' length; or seconds (600), or "30s", "10m", "2h".
    checkpoint_interval: float | str = "auto"
    # Or by epochs, instead: every N epochs (0: none but an interrupted run's; best.pt is still written).
    checkpoint_every: int | None = Field(None, ge=0)
    on_nonfinite: Literal["stop", "skip"] = "stop"  # a non-finite loss or gradient norm
    max_skips: int = Field(10, ge=1)  # with skip: stop after this many skipped steps in a row
    # Which weights the test data judges: the best checkpoint's (by the monitored validation metric,
    # the usual protocol) or the last. Default: best with validation data, else last.
    test_on: Literal["best", "last"] | None = None
    # Mixed precision: forward and loss under torch.autocast in bf16 or fp16 (fp16 with a GradScaler).
    precision: Literal["32", "bf16", "fp16"] = "32"
    accumulate: int = Field(1, ge=1)  # micro-batches (of data.batch_size) per optimizer step
    compile: bool | dict[str, Any] = False  # torch.compile the model; a mapping holds its arguments
    # torch's intra-op threads for this run (torch.set_num_threads). auto (the default): one for a step
    # too small to share (most models on a CPU), else the cores no other process keeps busy; the
    # run records the number it chose. null: torch's own choice (every core, even on a busy machine).
    threads: Annotated[int, Field(ge=1)] | Literal["auto"] | None = "auto"

    @field_validator("checkpoint_interval")
    @classmethod
    def _interval(cls, value: float | str) -> float | str:
        if interval_seconds(value) is None and value != "auto":
            raise ValueError(
                'give "auto", a number of seconds above 0, or a duration such as "30s", "10m", "2h"'
            )
        return value

    @model_validator(mode="after")
    def _one_checkpoint_rule(self) -> TrainConfig:
        if self.checkpoint_every is not None and self.checkpoint_interval != "auto":
            raise ValueError("give checkpoint_every (epochs) or checkpoint_interval (time), not both")
        return self

    @field_validator("precision", mode="before")
    @classmethod
    def _precision_as_text(cls, value: Any) -> Any:
        return "32" if value == 32 else value  # YAML reads `precision: 32` as a number


_DURATION = re.compile(r"^\s*(\d+(?:\.\d*)?)\s*(s|m|h)?\s*$")


def interval_seconds(value: float | str) -> float | None:
    """train.checkpoint_interval in seconds (None for "auto", or a value that is not a duration)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value) if 0 < value < math.inf else None
    match = _DURATION.match(value)
    if match is None or float(match.group(1)) <= 0:
        return None
    return float(match.group(1)) * {"s": 1, "m": 60, "h": 3600, None: 1}[match.group(2)]


# output.mlflow.log_every: auto logs at most about this many steps' values of each metric: as many as
# MLflow's charts draw (they sample longer histories down), at a cost that stays a few percent of a run.
MLFLOW_POINTS = 1000


class MlflowConfig(Strict):
    """output.mlflow: the run logged to an MLflow tracking server too (the optional extra)."""

    tracking_uri: str | None = (
        None  # sqlite:///mlflow.db, http://host:5000, a folder; default MLFLOW_TRACKING_URI
    )
    experiment: str | None = None  # default: the config's name
    run_name: str | None = None  # default: the run directory's name
    # Steps between the steps logged to MLflow. auto (the default): train.log_every, or the smallest
    # multiple of it that keeps the run's history to MLFLOW_POINTS values a metric (recorded in
    # config.yaml as the number it chose). Each value costs MLflow's client CPU (a SQLite store's
    # about 0.2 ms): a long run logging every step would spend most of a core on it.
    log_every: Annotated[int, Field(ge=1)] | Literal["auto"] | None = "auto"


class OutputConfig(Strict):
    dir: str = "runs"
    tensorboard: bool = False  # TensorBoard event files in <run>/tensorboard/ (the optional extra)
    mlflow: MlflowConfig | None = None


class ConfigFile(Strict):
    """A whole config file. The required sections are typed optional so that, when one is broken,
    the others can still be resolved and one message lists every problem (see `validate_file`)."""

    name: str | None = Field(None, min_length=1)
    seed: int = Field(0, ge=0, lt=2**32)
    device: str = "auto"
    deterministic: bool = False  # torch.use_deterministic_algorithms, and what CUDA needs for it
    model: ModelSection | None = None
    data: DataSection | None = None
    loss: NamedSection | None = None  # default: cross_entropy for class labels, mse for values
    optimizer: OptimizerSection | None = None
    scheduler: SchedulerSection | None = None
    clip: ClipConfig | None = None
    # What evaluations report besides the loss: names, or mappings with a name and arguments
    # (config/metrics_section.py); default: accuracy for class labels, rmse, mae and r2 for values.
    metrics: list[Any] | None = None
    train: TrainConfig = Field(default_factory=TrainConfig)
    output: OutputConfig = Field(default_factory=OutputConfig)


REQUIRED_SECTIONS = {
    "model": "the network to train, e.g. model: {name: mlp, hidden: [128]}",
    "data": "the training data, e.g. data: {name: random, batch_size: 64}",
    "optimizer": "the optimizer, e.g. optimizer: {name: adam, lr: 1e-3}",
}

# The data keys that describe batching, not the dataset: they stay when `data.name` changes.
LOADER_KEYS = tuple(LoaderOptions.model_fields)


def validate_file(values: dict[str, Any]) -> tuple[ConfigFile, list[str]]:
    """The validated file and its problems, one line each. Broken sections are left out of the file
    returned (so that the rest can be resolved), and reported."""
    problems = [
        f"{section}: required: {help_text}"
        for section, help_text in REQUIRED_SECTIONS.items()
        if values.get(section) is None
    ]
    try:
        return ConfigFile.model_validate(values), problems
    except ValidationError as error:
        problems += describe_errors(error, ConfigFile)
        broken = {detail["loc"][0] if detail["loc"] else "" for detail in error.errors()}
        # Top-level fields are validated independently, so the file without its broken ones is valid.
        valid = {
            key: value
            for key, value in values.items()
            if key in ConfigFile.model_fields and key not in broken
        }
        return ConfigFile.model_validate(valid), problems


def describe_errors(error: ValidationError, schema: type[BaseModel], where: str = "") -> list[str]:
    """pydantic's errors as lines naming their keys (`_describe_error`), one line a key."""
    return [_describe_error(detail, schema, where) for detail in _merged_errors(error)]


def _merged_errors(error: ValidationError) -> list[Any]:
    """pydantic's errors, those of one key's union branches merged into one: `threads: fast` is one
    problem ("must be a valid integer or 'auto'"), not one per branch with the branch's tag in the key
    (`train.threads.constrained-int`, `train.threads.literal['auto']`)."""
    merged: dict[tuple[Any, ...], Any] = {}
    for detail in error.errors():
        loc = tuple(detail["loc"])
        if len(loc) >= 2 and _is_union_branch(loc[-1]):
            key = loc[:-1]
            alternative = _message(detail).removeprefix("must be ")
            if key in merged and merged[key]["type"] == "union":
                merged[key]["msg"] += f" or {alternative}"
            else:
                merged[key] = {
                    "type": "union",
                    "loc": key,
                    "msg": f"must be {alternative}",
                    "input": detail["input"],
                }
        else:
            merged[(*loc, len(merged))] = detail  # (every other error as it is, in its order)
    return list(merged.values())


def _is_union_branch(part: Any) -> bool:
    """A location part that names a union's branch (pydantic's tag), not a key: 'constrained-int',
    "literal['auto']", 'int', 'str', 'list[int]'."""
    return isinstance(part, str) and (part in ("int", "float", "str", "bool") or "-" in part or "[" in part)


def _message(detail: Any) -> str:
    """pydantic's message in optcli's words: 'must be ...', not 'Input should be ...'."""
    message = detail["msg"].removeprefix("Value error, ").replace("Input should be", "must be")
    return message[:1].lower() + message[1:]


def _describe_error(detail: Any, schema: type[BaseModel], where: str = "") -> str:
    """One pydantic error as a line naming its key: 'train.epochs: must be greater than or equal to 1, got 0'."""
    location = ".".join(str(part) for part in (where, *detail["loc"]) if part != "")
    key = str(detail["loc"][-1]) if detail["loc"] else ""
    kind = detail["type"]
    if kind == "extra_forbidden":
        fields = list(_fields_at(schema, detail["loc"][:-1]))
        return f"{location}: unknown key{did_you_mean(key, fields)}; expected one of: {', '.join(fields)}"
    if kind == "missing":
        if key == "name":
            return (
                f"{location}: required: the registry name or import path of the {location.rsplit('.', 1)[0]}"
            )
        help_text = REQUIRED_SECTIONS.get(key)
        return f"{location}: required" + (f": {help_text}" if help_text else "")
    message = _message(detail)
    if kind.endswith("_type") or kind.startswith(("greater", "less", "literal", "union")):
        return f"{location}: {message}, got {detail['input']!r}"
    return f"{location}: {message}"


def _fields_at(schema: type[BaseModel], loc: tuple[Any, ...]) -> dict[str, Any]:
    """The fields of the model found at `loc` inside `schema` (for 'expected one of')."""
    model: Any = schema
    for part in loc:
        field = model.model_fields.get(part) if isinstance(part, str) else None
        annotation = getattr(field, "annotation", None)
        candidates = [annotation, *getattr(annotation, "__args__", ())]
        model = next((c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)), None)
        if model is None:
            return {}
    return dict(model.model_fields)
