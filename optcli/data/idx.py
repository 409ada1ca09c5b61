"""MNIST-format IDX files (gzipped or raw), as MNIST and Fashion-MNIST ship: a dataset of images and
labels. Each file is read once per process (cached on path and modification time); every problem
with one is a ConfigError naming it.
"""

from __future__ import annotations

import functools
import gzip
import math
import struct
from pathlib import Path

import torch

from optcli.data.in_memory import DataInfo, TensorData, modified_time
from optcli.errors import ConfigError


class IdxData:
    """MNIST-format IDX files (`images`, `labels`), gzipped or raw, as MNIST and Fashion-MNIST ship.

    Pixels are scaled to [0, 1] and kept as 1×H×W images: `mlp` flattens them, `cnn` convolves them.
    """

    PATH_ARGUMENTS = ("images", "labels")

    def __init__(self, images: str, labels: str, limit: int | None = None):
        if limit is not None and limit < 1:
            raise ConfigError(f"limit: must be at least 1, got {limit}")
        self.images, self.labels, self.limit = images, labels, limit

    def describe(self) -> DataInfo:
        images, labels = self._arrays()
        return DataInfo(len(images), (1, *images.shape[1:]), int(labels.max()) + 1)

    def load(self, seed: int, split: str = "train") -> TensorData:
        images, labels = self._arrays()
        scale = 255.0 if images.dtype == torch.uint8 else 1.0
        inputs = images.to(torch.get_default_dtype()).unsqueeze(1) / scale
        return TensorData(inputs, labels.long())

    def _arrays(self) -> tuple[torch.Tensor, torch.Tensor]:
        images = read_idx(self.images, "images")
        labels = read_idx(self.labels, "labels")
        if images.dim() != 3:
            raise ConfigError(f"images: {self.images} holds {images.dim()}-D data; images are N×H×W")
        if labels.dim() != 1:
            raise ConfigError(
                f"labels: {self.labels} holds {labels.dim()}-D data; labels are one number each"
            )
        if len(images) != len(labels):
            raise ConfigError(
                f"labels: {self.labels} has {len(labels)} labels but {self.images} has {len(images)} images"
            )
        if len(labels) and int(labels.min()) < 0:
            raise ConfigError(f"labels: {self.labels} holds negative labels")
        if self.limit is not None:
            images, labels = images[: self.limit], labels[: self.limit]
        return images, labels


# IDX type codes: https://yann.lecun.com/exdb/mnist/ ("THE IDX FILE FORMAT")
_IDX_TYPES = {
    0x08: (torch.uint8, 1),
    0x09: (torch.int8, 1),
    0x0B: (torch.int16, 2),
    0x0C: (torch.int32, 4),
    0x0D: (torch.float32, 4),
    0x0E: (torch.float64, 8),
}


def read_idx(path: str, key: str) -> torch.Tensor:
    return _read_idx(path, modified_time(Path(path), key), key)


@functools.lru_cache(maxsize=8)
def _read_idx(path: str, modified: float, key: str) -> torch.Tensor:
    try:
        with open(path, "rb") as stream:
            opened = gzip.open(path, "rb") if stream.read(2) == b"\x1f\x8b" else open(path, "rb")  # noqa: SIM115
        with opened as stream:
            data = stream.read()
    except (OSError, EOFError, gzip.BadGzipFile) as error:
        raise ConfigError(f"{key}: cannot read {path}: {error}") from None
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _IDX_TYPES or data[3] == 0:
        raise ConfigError(f"{key}: {path} is not an IDX file (its header does not start 00 00 <type> <dims>)")
    dtype, itemsize = _IDX_TYPES[data[2]]
    dimensions = data[3]
    header_size = 4 + 4 * dimensions
    if len(data) < header_size:
        raise ConfigError(f"{key}: {path} has a corrupt IDX header: it ends before its {dimensions} sizes")
    shape = struct.unpack(f">{dimensions}I", data[4:header_size])
    expected = math.prod(shape) * itemsize
    if len(data) - header_size != expected:
        raise ConfigError(
            f"{key}: {path} has a corrupt IDX header: it declares shape {list(shape)} "
            f"({expected} bytes of data) but holds {len(data) - header_size} bytes"
        )
    array = torch.frombuffer(bytearray(data[header_size:]), dtype=dtype)
    if itemsize > 1:
        array = array.view(torch.uint8).reshape(-1, itemsize).flip(1).reshape(-1).view(dtype)  # big-endian
    return array.reshape(shape)
