"""Turning a validated RunSpec into live objects: seeded model, data on the device, optimizer, scheduler."""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import torch

from optcli.config.parts import run_optimizer, run_scheduler
from optcli.config.spec import RunSpec
from optcli.data.batches import Batches, InMemoryBatches
from optcli.data.in_memory import TensorData
from optcli.data.loader import LoaderBatches, make_loader
from optcli.process.cores import available_cores
from optcli.seeds import DATA_ORDER, derive_seed, seed_everything
from optcli.train.distributed import ALONE, World
from optcli.train.run_data import load_data, load_datasets


@dataclass
class Session:
    spec: RunSpec
    device: torch.device
    model: torch.nn.Module
    batches: Batches
    val_batches: Batches | None
    test_batches: Batches | None
    loss_function: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: Any | None  # an LRScheduler or ReduceLROnPlateau
    init_hash: str  # the initial weights: equal for every run of one seed with the same model
    data_hash: str  # the data and the order it is drawn in, every epoch
    data_description: dict[str, Any]  # sizes, class names, normalization: the run's data.json
    # The module the loop calls: the model itself, or wrapped by DistributedDataParallel and
    # torch.compile (`model` keeps the plain state dict that checkpoints hold).
    wrapped_model: torch.nn.Module
    scaler: torch.amp.GradScaler | None = None  # train.precision: fp16
    world: World = ALONE  # the processes training together (one, unless launched by torchrun)

    @property
    def parallel(self) -> Any:
        """The DistributedDataParallel wrapper (inside torch.compile's, if any), or None."""
        if not self.world.active:
            return None
        return getattr(self.wrapped_model, "_orig_mod", self.wrapped_model)

    @property
    def evaluated(self) -> torch.nn.Module:
        """What evaluation calls: the trained module, but not through DistributedDataParallel, since
        every process evaluates the whole split alone (no collectives, the single-process values)."""
        return self.model if self.world.active else self.wrapped_model


def set_determinism(deterministic: bool) -> None:
    """`deterministic: true`: deterministic algorithms only (an error where an operation has none),
    and what CUDA's cuBLAS needs for it, set before CUDA starts."""
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.backends.cudnn.benchmark = False
    torch.use_deterministic_algorithms(deterministic)


@contextlib.contextmanager
def threads_restored() -> Iterator[None]:
    """torch's thread count as it was before a run that sets train.threads: in a comparison's process
    (--jobs 1), an arm's count would otherwise become every later run's, and the runs' results would
    depend on the order they ran in."""
    before = torch.get_num_threads()
    try:
        yield
    finally:
        if torch.get_num_threads() != before:
            torch.set_num_threads(before)


# A training step (forward and backward, about three forward passes) with less floating-point work
# than this is not worth sharing among threads on a CPU: waking them costs more than they save, and
# beside a busy process a thread that waits at a barrier for a descheduled one stalls every operation
# (benchmarks/threads.py: every shipped config trains fastest with one thread, 4-6x so on a busy machine).
SHARED_STEP_FLOPS = 3e8


def chosen_threads(spec: RunSpec) -> int:
    """train.threads: auto: one thread for a small step; else as many as this process may use (a
    comparison's worker its share of the cores) less the cores other processes keep busy (the load
    average), at least one."""
    forward = spec.findings.forward_flops
    if forward is not None and 3 * forward < SHARED_STEP_FLOPS:
        return 1
    busy = round(os.getloadavg()[0]) if hasattr(os, "getloadavg") else 0
    return max(1, min(torch.get_num_threads(), available_cores() - busy))


def with_threads_chosen(spec: RunSpec) -> RunSpec:
    """The spec with train.threads: auto replaced by the count it chooses (what config.yaml records)."""
    if spec.train.threads != "auto":
        return spec
    return dataclasses.replace(spec, train=spec.train.model_copy(update={"threads": chosen_threads(spec)}))


def build_session(spec: RunSpec, world: World = ALONE) -> Session:
    spec = with_threads_chosen(spec)
    if isinstance(spec.train.threads, int):
        torch.set_num_threads(spec.train.threads)
    set_determinism(spec.deterministic)
    seed_everything(spec.seed)
    # The model is built first, on the CPU, straight after seeding: its weights are those of
    # `torch.manual_seed(seed); Model()` in a hand-written script, on every device.
    model = spec.model.build()
    if spec.model_init is not None:  # trained weights (checked against the model when the config resolved)
        model.load_state_dict(spec.model_init.state_dict(), strict=spec.model_init.strict)
    init_hash = fingerprint_tensors(model.state_dict().values())
    device = torch.device(spec.device)
    model.to(device)
    shard = (world.rank, world.size)  # each process's part of every global batch
    if spec.data.from_user_dataset:
        batches, val_batches, test_batches, data_hash, description = _loader_batches(spec, device, shard)
    else:
        batches, val_batches, test_batches, data_hash, description = _in_memory_batches(spec, device, shard)
    loss_function = spec.loss.build().to(device)
    optimizer = run_optimizer(spec, model)
    scheduler = run_scheduler(spec, optimizer)
    scaler = torch.amp.GradScaler(device.type) if spec.train.precision == "fp16" else None
    return Session(
        spec,
        device,
        model,
        batches,
        val_batches,
        test_batches,
        loss_function,
        optimizer,
        scheduler,
        init_hash,
        data_hash,
        description,
        compiled(parallel(model, world, device), spec.train.compile),
        scaler,
        world,
    )


def parallel(model: torch.nn.Module, world: World, device: torch.device) -> torch.nn.Module:
    """Several processes: DistributedDataParallel, which averages the gradients over them in backward."""
    if not world.active:
        return model
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)


def compiled(model: torch.nn.Module, options: bool | dict[str, Any]) -> torch.nn.Module:
    """train.compile: torch.compile's wrapper of the model (compiled lazily, at the first step)."""
    if options is False:
        return model
    from optcli.config.speed_options import compile_arguments

    arguments = compile_arguments(options) if isinstance(options, dict) else {}
    return torch.compile(model, **arguments)  # type: ignore[return-value]


BatchesOfRun = tuple[Batches, Batches | None, Batches | None, str, dict[str, Any]]


def _in_memory_batches(spec: RunSpec, device: torch.device, shard: tuple[int, int]) -> BatchesOfRun:
    """Whole tensors on the device, indexed a batch at a time: the fast path for data that fits."""
    loaded = load_data(spec.data, spec.seed)
    data, loader = loaded.train, spec.data.loader
    shuffle_generator = torch.Generator().manual_seed(derive_seed(spec.seed, DATA_ORDER))
    # The order of every epoch follows from the generator's state, so hashing that state with the
    # data identifies the whole sequence of batches without drawing it.
    order = (loader.batch_size, loader.shuffle, loader.drop_last)
    # (A memory-mapped corpus is named by its tokens' hash instead of read whole to hash it.)
    data_hash = fingerprint_tensors(
        [
            *(
                [torch.tensor(list(data.fingerprint.encode()))]
                if data.fingerprint
                else [data.inputs, data.targets]
            ),
            shuffle_generator.get_state(),
            torch.tensor(order),
        ]
    )
    batches = InMemoryBatches(
        data,
        loader.batch_size,
        shuffle=loader.shuffle,
        drop_last=loader.drop_last,
        generator=shuffle_generator,
        device=device,
        shard=shard,
    )
    sequences = spec.data.info.sequence_length is not None
    val, test = (
        evaluation_batches(part, loader.batch_size, device, sequences) for part in (loaded.val, loaded.test)
    )
    return batches, val, test, data_hash, loaded.description


def _loader_batches(spec: RunSpec, device: torch.device, shard: tuple[int, int]) -> BatchesOfRun:
    """A user's Datasets through DataLoaders seeded from the run's seed (data/loader.py)."""
    loaded, options = load_datasets(spec.data, spec.seed), spec.data.loader
    workers: dict[str, Any] = {
        "collate_fn": loaded.collate_fn,
        "num_workers": options.num_workers,
        "pin_memory": options.pin_memory and device.type == "cuda",  # pinning only speeds copies to a GPU
        "persistent_workers": options.persistent_workers,
        "prefetch_factor": options.prefetch_factor,
    }
    train = make_loader(
        loaded.train,
        options.batch_size,
        seed=spec.seed,
        shuffle=options.shuffle,
        drop_last=options.drop_last,
        shard=shard,
        **workers,
    )
    shaping = (spec.data.binary_labels, spec.data.info.target_column)
    batches = LoaderBatches(train, device, *shaping)
    # The samples are not all read to hash them: the first batch, the length and the order's seed stand in.
    first = spec.data.train.source.first_batch(options.batch_size)
    parts = [
        value
        for value in (first.values() if isinstance(first, dict) else first)
        if isinstance(value, torch.Tensor)
    ]
    order = (len(loaded.train), options.batch_size, options.shuffle, options.drop_last)
    data_hash = fingerprint_tensors([*parts, batches.generator.get_state(), torch.tensor(order)])
    val, test = (
        LoaderBatches(
            make_loader(part, options.batch_size, seed=spec.seed, shuffle=False, **workers), device, *shaping
        )
        if part is not None
        else None
        for part in (loaded.val, loaded.test)
    )
    return batches, val, test, data_hash, loaded.description


# Evaluation needs no gradients, so it can take bigger batches than training.
EVALUATION_BATCH_SIZE = 1024


def evaluation_batches(
    data: TensorData | None, batch_size: int, device: torch.device, sequences: bool = False
) -> InMemoryBatches | None:
    """Batches of a split to evaluate: bigger than training's, but for sequences, whose outputs
    (a row of logits per position) already take the training batch's memory many times over."""
    if data is None:
        return None
    size = batch_size if sequences else max(batch_size, EVALUATION_BATCH_SIZE)
    return InMemoryBatches(
        data, size, shuffle=False, drop_last=False, generator=torch.Generator(), device=device
    )


def fingerprint_tensors(tensors: Iterable[torch.Tensor]) -> str:
    """A short hash of tensors' shapes, dtypes and exact bytes."""
    digest = hashlib.sha256()
    for tensor in tensors:
        plain = tensor.detach().cpu().contiguous()
        digest.update(f"{plain.dtype}{tuple(plain.shape)}".encode())
        digest.update(plain.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:16]
