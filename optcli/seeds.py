"""One seed per run, and independent, stable seeds derived from it for each use of randomness. Every
purpose is named here, once: the code that draws and summary.json, which records them, read these."""

from __future__ import annotations

import hashlib

DATA = "data"  # a synthetic dataset's samples (its validation and test draws derive from this seed)
VALIDATION_SPLIT = "split"  # which samples data.val_fraction holds out
TEST_SPLIT = "test_split"  # which samples data.test_fraction holds out
DATA_ORDER = "shuffle"  # the order of every epoch's batches
LOADER_WORKERS = "workers"  # a user Dataset's DataLoader worker processes


def derive_seed(seed: int, purpose: str) -> int:
    """A seed for one purpose (the data, a split, the shuffling order) that no other purpose shares."""
    digest = hashlib.sha256(f"{seed}:{purpose}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def seed_everything(seed: int) -> None:
    """Python's, NumPy's and torch's global generators (torch's seeds every CUDA device too)."""
    import random

    import numpy
    import torch

    random.seed(seed)
    numpy.random.seed(seed)
    torch.manual_seed(seed)


def batch_purpose(epoch: int, index: int, part: int | None = None) -> str:
    """A user Dataset's batch `index` of `epoch` (and a process's `part` of it): what its augmentations draw."""
    return f"batch:{epoch}:{index}" + (f":{part}" if part is not None else "")


def derived_seeds(seed: int) -> dict[str, int | str]:
    """Every seed a run derives, as summary.json records them."""
    return {
        "run": seed,
        "data": derive_seed(seed, DATA),
        "split": derive_seed(seed, VALIDATION_SPLIT),
        "test_split": derive_seed(seed, TEST_SPLIT),
        "data_order": derive_seed(seed, DATA_ORDER),
        "loader_workers": derive_seed(seed, LOADER_WORKERS),
        "batches": f"derive_seed({seed}, 'batch:<epoch>:<index>[:<rank>]') for a Dataset of your own's batches",
    }
