"""A Dataset of one's own, for configs/waves.yaml: waveforms read from CSV files (one file per kind,
made by scripts/make_waves.py), shifted and noised at random every time a training sample is read.

optcli calls `make_datasets(**arguments)` with the config's other data keys, and batches what it
returns through a seeded DataLoader: the augmentations repeat bit for bit, with or without workers.
"""

from __future__ import annotations

from pathlib import Path

import numpy
import torch
from torch.utils.data import Dataset

HERE = Path(__file__).resolve().parent


class Waves(Dataset[tuple[torch.Tensor, torch.Tensor]]):
    """Every CSV file in `root` is a kind (its name), every row a waveform of that kind."""

    def __init__(self, root: str, indices: list[int] | None = None, augment: bool = False) -> None:
        files = sorted((HERE / root).glob("*.csv"))  # a relative root is taken from this file's folder
        if not files:
            raise FileNotFoundError(f"no CSV files in {HERE / root}; run scripts/make_waves.py")
        self.classes = [path.stem for path in files]  # optcli sizes the model's outputs from these
        rows = [numpy.loadtxt(path, delimiter=",", dtype=numpy.float32, ndmin=2) for path in files]
        signals = torch.from_numpy(numpy.concatenate(rows))
        labels = torch.cat([torch.full((len(part),), kind) for kind, part in enumerate(rows)])
        chosen = torch.tensor(indices) if indices is not None else torch.arange(len(signals))
        self.signals, self.labels, self.augment = signals[chosen], labels[chosen], augment

    def __len__(self) -> int:
        return len(self.signals)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        signal = self.signals[index]
        if self.augment:  # a random circular shift and a little noise: torch's generator, seeded by optcli
            shift = int(torch.randint(-6, 7, ()))
            signal = torch.roll(signal, shift) + 0.05 * torch.randn_like(signal)
        return signal, self.labels[index]


def make_datasets(root: str = "data/waves", val_share: float = 0.25) -> dict[str, Waves]:
    """Training data with augmentation and validation data without, split once by a fixed seed."""
    total = len(Waves(root))
    order = torch.randperm(total, generator=torch.Generator().manual_seed(0)).tolist()
    held_out = round(total * val_share)
    return {
        "train": Waves(root, sorted(order[held_out:]), augment=True),
        "val": Waves(root, sorted(order[:held_out])),
    }


class WaveNet(torch.nn.Module):
    """Two 1-d convolutions, each normalized, and a global average: it sees a wave's shape wherever
    the wave starts. optcli fills in `out_features` from the data (one output per kind). Parameter
    names: conv1.weight, conv1.bias, norm1.weight, norm1.bias, ..., head.weight, head.bias."""

    def __init__(self, out_features: int, channels: int = 16) -> None:
        super().__init__()
        self.conv1 = torch.nn.Conv1d(1, channels, kernel_size=5, padding=2)
        self.norm1 = torch.nn.BatchNorm1d(channels)
        self.conv2 = torch.nn.Conv1d(channels, channels, kernel_size=5, padding=2)
        self.norm2 = torch.nn.BatchNorm1d(channels)
        self.head = torch.nn.Linear(channels, out_features)

    def forward(self, signals: torch.Tensor) -> torch.Tensor:
        hidden = torch.relu(self.norm1(self.conv1(signals.unsqueeze(1))))
        hidden = torch.relu(self.norm2(self.conv2(hidden)))
        return self.head(hidden.mean(dim=2))
