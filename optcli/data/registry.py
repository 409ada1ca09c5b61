"""The dataset registry: every name a config's `data:` section can use."""

from __future__ import annotations

from optcli.components.registry import Registry
from optcli.data.files import CsvData, IdxData
from optcli.data.in_memory import RandomData, TeacherData, TensorFileData
from optcli.data.scikit_learn import BreastCancerData, DigitsData, IrisData, WineData

DATASETS = Registry(
    "dataset",
    requirement=(
        lambda target: (
            callable(getattr(target, "describe", None)) and callable(getattr(target, "load", None))
        ),
        "a dataset optcli can use: a class with describe() and load(seed, split) (see the README)",
    ),
)
DATASETS.add("random", RandomData, summary="the guide's torch.randn inputs and torch.randint labels")
DATASETS.add("teacher", TeacherData, summary="labels from a fixed random teacher network")
DATASETS.add("tensors", TensorFileData, summary="x and y from a .pt or .npz file")
DATASETS.add("csv", CsvData, summary="a CSV table: one target column, numeric feature columns")
DATASETS.add("idx", IdxData, summary="MNIST-format IDX image and label files, gzipped or raw")
DATASETS.add("digits", DigitsData, summary="scikit-learn's 8x8 digits (needs optcli[sklearn])")
DATASETS.add("iris", IrisData, summary="scikit-learn's iris (needs optcli[sklearn])")
DATASETS.add("wine", WineData, summary="scikit-learn's wine (needs optcli[sklearn])")
DATASETS.add(
    "breast_cancer", BreastCancerData, summary="scikit-learn's breast cancer (needs optcli[sklearn])"
)
