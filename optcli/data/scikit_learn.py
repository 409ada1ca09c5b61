"""scikit-learn's bundled datasets: digits, iris, wine and breast_cancer (classification), diabetes
(regression).

They ship inside scikit-learn (nothing is downloaded), which is an optional extra: without it these
names say how to install it.
"""

from __future__ import annotations

import functools
from typing import Any

import torch

from optcli.data.in_memory import DataInfo, TensorData
from optcli.errors import ConfigError
from optcli.extras import install_command


class SklearnData:
    """A bundled scikit-learn dataset; subclasses name which."""

    LOADER = ""  # the sklearn.datasets function

    def describe(self) -> DataInfo:
        data = self.load(0)
        classes = int(data.targets.max()) + 1
        return DataInfo(len(data), tuple(data.inputs.shape[1:]), classes, class_names=self.class_names())

    def load(self, seed: int, split: str = "train") -> TensorData:
        inputs, targets = _load(self.LOADER)
        return TensorData(inputs, targets)

    def class_names(self) -> tuple[str, ...]:
        return tuple(str(name) for name in _bunch(self.LOADER).target_names)


class DigitsData(SklearnData):
    """8×8 images of handwritten digits (1,797), pixels scaled to [0, 1], kept as 1×8×8 images."""

    LOADER = "load_digits"


class IrisData(SklearnData):
    """150 irises, 4 measurements, 3 species."""

    LOADER = "load_iris"


class WineData(SklearnData):
    """178 wines, 13 chemical measurements, 3 cultivars."""

    LOADER = "load_wine"


class BreastCancerData(SklearnData):
    """569 tumours, 30 measurements, malignant or benign."""

    LOADER = "load_breast_cancer"


class DiabetesData(SklearnData):
    """442 patients, 10 baseline measurements (already centred and scaled by scikit-learn), and a
    measure of the disease's progression a year later: a regression target, scaled here to unit
    variance (divided by its standard deviation, 77.1) so that losses read like those of other tasks."""

    LOADER = "load_diabetes"

    def describe(self) -> DataInfo:
        data = self.load(0)
        return DataInfo(len(data), tuple(data.inputs.shape[1:]), None, 1, task_reason="")


def _bunch(loader: str) -> Any:
    try:
        import sklearn.datasets
    except ImportError:
        raise ConfigError(
            f"this dataset comes with scikit-learn, which is not installed: {install_command('sklearn')}"
        ) from None
    return getattr(sklearn.datasets, loader)()


@functools.cache
def _load(loader: str) -> tuple[torch.Tensor, torch.Tensor]:
    bunch = _bunch(loader)
    inputs = torch.tensor(bunch.data, dtype=torch.get_default_dtype())
    if loader == "load_digits":
        inputs = inputs.reshape(-1, 1, 8, 8) / 16.0  # pixel values are 0..16
    if loader == "load_diabetes":  # a value per sample, shaped as the model's one output
        target = torch.tensor(bunch.target, dtype=torch.float64)
        return inputs, (target / target.std()).to(torch.get_default_dtype()).unsqueeze(1)
    return inputs, torch.tensor(bunch.target, dtype=torch.long)
