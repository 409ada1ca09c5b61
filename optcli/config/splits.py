"""Which rows of a dataset train and which are held out by `data.val_fraction` and
`data.test_fraction`: a seeded choice (or, for text, the corpus's last windows), decided by the data
section and the run's seed alone, so that a run, its check and `optcli evaluate` agree on it."""

from __future__ import annotations

import torch

from optcli import seeds
from optcli.config.spec import DataSpec
from optcli.seeds import derive_seed


def split_rows(total: int, data: DataSpec, seed: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The rows of the training data (0-based, in the order the dataset gives them) that train, and
    those held out for "test" and "val" by data.test_fraction and data.val_fraction. The test rows are
    drawn first, so that validation never sees a test sample; every part keeps the data's order.
    Text holds out its last windows instead (validation, then test): a fixed split of the corpus."""
    rows, held_out = torch.arange(total), {}
    if getattr(data.train.source, "HOLDS_OUT_TAIL", False):  # text: the last windows, whatever the seed
        val, test = data.val_samples_held_out, data.test_samples_held_out
        train = total - val - test
        if val:
            held_out["val"] = torch.arange(train, train + val)
        if test:
            held_out["test"] = torch.arange(train + val, total)
        return rows[:train], held_out
    if data.loader.test_fraction is not None:
        rows, held_out["test"] = _hold_out(
            rows, data.test_samples_held_out, derive_seed(seed, seeds.TEST_SPLIT)
        )
    if data.loader.val_fraction is not None:
        rows, held_out["val"] = _hold_out(
            rows, data.val_samples_held_out, derive_seed(seed, seeds.VALIDATION_SPLIT)
        )
    return rows, held_out


def _hold_out(rows: torch.Tensor, count: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A seeded random `count` of the rows, and the rest."""
    order = torch.randperm(len(rows), generator=torch.Generator().manual_seed(seed))
    return rows[order[count:].sort().values], rows[order[:count].sort().values]
