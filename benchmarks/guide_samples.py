"""A user's Dataset for benchmarks/overhead.py: the guide's random data, served one sample at a time
(`__getitem__`), so that batches go through optcli's DataLoader path and PyTorch's collation."""

from __future__ import annotations

import torch
from torch.utils.data import Dataset


class GuideSamples(Dataset[tuple[torch.Tensor, torch.Tensor]]):
    def __init__(self, samples: int = 1280, features: int = 784, classes: int = 10) -> None:
        generator = torch.Generator().manual_seed(0)
        self.inputs = torch.randn(samples, features, generator=generator)
        self.targets = torch.randint(0, classes, (samples,), generator=generator)
        self.classes = [str(label) for label in range(classes)]

    def __len__(self) -> int:
        return len(self.inputs)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.inputs[index], self.targets[index]
