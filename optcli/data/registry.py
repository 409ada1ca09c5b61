"""The dataset registry: every name a config's `data:` section can use."""

from __future__ import annotations

import sys
from typing import Any

import torch

from optcli.components.registry import Registry
from optcli.data.files import CsvData
from optcli.data.idx import IdxData
from optcli.data.in_memory import RandomData, TeacherData, TensorFileData
from optcli.data.scikit_learn import BreastCancerData, DiabetesData, DigitsData, IrisData, WineData
from optcli.data.text import TextData
from optcli.data.user_datasets import UserDatasets

DATASETS = Registry(
    "dataset",
    requirement=(
        lambda target: is_in_memory(target) or _is_dataset_callable(target),
        "a dataset optcli can use: a map-style torch Dataset class, a function returning Datasets, or a "
        "class with describe() and load(seed, split) (see the README)",
    ),
)


def is_in_memory(target: Any) -> bool:
    """optcli's own kind of dataset, loaded whole as tensors; anything else is a user's Dataset callable."""
    return callable(getattr(target, "describe", None)) and callable(getattr(target, "load", None))


def _is_dataset_callable(target: Any) -> bool:
    """A map-style Dataset class (a torch Dataset, or a class of one's own with __len__ and
    __getitem__, not a standard library container), or a function that returns Datasets."""
    if not isinstance(target, type):
        return callable(target)
    if issubclass(target, torch.utils.data.Dataset):
        return True
    own_module = target.__module__.partition(".")[0] not in sys.stdlib_module_names
    return (
        own_module
        and callable(getattr(target, "__len__", None))
        and callable(getattr(target, "__getitem__", None))
    )


def open_source(component: Any) -> Any:
    """The dataset object of a data section's bound component (config/spec.py's Component): built,
    for in-memory data; else the user's callable wrapped, not yet run."""
    if is_in_memory(component.target):
        return component.build()
    return UserDatasets(component.target, component.arguments, component.name)


DATASETS.add("random", RandomData, summary="the guide's torch.randn inputs and torch.randint labels")
DATASETS.add("teacher", TeacherData, summary="labels from a fixed random teacher network")
DATASETS.add("tensors", TensorFileData, summary="x and y from a .pt or .npz file")
DATASETS.add("csv", CsvData, summary="a CSV table: one target column, numeric feature columns")
DATASETS.add("idx", IdxData, summary="MNIST-format IDX image and label files, gzipped or raw")
DATASETS.add(
    "text",
    TextData,
    summary="text as windows of byte tokens for language models (a file, glob, folder or stdlib:email,json)",
)
DATASETS.add("digits", DigitsData, summary="scikit-learn's 8x8 digits (needs optcli[sklearn])")
DATASETS.add("iris", IrisData, summary="scikit-learn's iris (needs optcli[sklearn])")
DATASETS.add("wine", WineData, summary="scikit-learn's wine (needs optcli[sklearn])")
DATASETS.add(
    "diabetes", DiabetesData, summary="scikit-learn's diabetes: a regression (needs optcli[sklearn])"
)
DATASETS.add(
    "breast_cancer", BreastCancerData, summary="scikit-learn's breast cancer (needs optcli[sklearn])"
)
