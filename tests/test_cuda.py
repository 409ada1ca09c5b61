"""The CUDA path: the same run as on the CPU, and no host-device sync forced on every step.

These skip themselves on machines without CUDA.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch

from optcli.config.loading import RawConfig
from optcli.config.resolve import resolve_config
from optcli.train.loop import DEVICE_STEPS_PER_SYNC, run_training
from optcli.train.records import StepRecord
from optcli.train.session import build_session
from tests.conftest import guide_config

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def spec_for(device: str, steps: int, **train):
    config = guide_config(
        device=device,
        clip={"max_norm": 1.0},
        scheduler={"name": "step", "step_size": 1},
        train={"epochs": 100, "max_steps": steps, **train},
    )
    config["data"]["samples"] = 64 * steps  # one epoch: only the periodic copies sync
    return resolve_config(RawConfig(config, Path.cwd(), "cuda"))


def rows_and_syncs(session) -> tuple[list[StepRecord], list[warnings.WarningMessage]]:
    """A run's step rows, and the host-device syncs CUDA's debug mode saw once setup was done."""
    records = run_training(session)
    next(records)  # RunStarted: setup is done
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("warn")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            rows = [record for record in records if isinstance(record, StepRecord)]
    finally:
        torch.cuda.set_sync_debug_mode("default")
    return rows, [warning for warning in caught if "synchroniz" in str(warning.message)]


def test_cuda_run_follows_the_cpu_run():
    cpu = [r for r in run_training(build_session(spec_for("cpu", 20))) if isinstance(r, StepRecord)]
    cuda = [r for r in run_training(build_session(spec_for("cuda", 20))) if isinstance(r, StepRecord)]
    assert [r.step for r in cuda] == [r.step for r in cpu]
    assert [r.lr for r in cuda] == [r.lr for r in cpu]
    assert [r.loss for r in cuda] == pytest.approx([r.loss for r in cpu], rel=1e-3)


def test_no_sync_per_step():
    steps = 4 * DEVICE_STEPS_PER_SYNC
    session = build_session(spec_for("cuda", steps))
    rows, syncs = rows_and_syncs(session)
    assert len(rows) == steps
    # A few copies per block of DEVICE_STEPS_PER_SYNC steps (losses, norms), never one per step.
    assert len(syncs) <= 4 * (steps // DEVICE_STEPS_PER_SYNC + 2), [str(w.message) for w in syncs[:5]]


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mixed_precision_follows_full_precision(precision):
    if precision == "bf16" and not torch.cuda.is_bf16_supported():
        pytest.skip("this GPU has no bf16")
    full = [r for r in run_training(build_session(spec_for("cuda", 20))) if isinstance(r, StepRecord)]
    session = build_session(spec_for("cuda", 20, precision=precision))
    mixed = [r for r in run_training(session) if isinstance(r, StepRecord)]
    assert (session.scaler is not None) == (precision == "fp16")
    assert [r.loss for r in mixed] == pytest.approx([r.loss for r in full], rel=5e-2)


@pytest.mark.parametrize("train", [{"accumulate": 4}, {"precision": "bf16"}])
def test_no_sync_per_step_with_accumulation_or_bf16(train):
    if train.get("precision") == "bf16" and not torch.cuda.is_bf16_supported():
        pytest.skip("this GPU has no bf16")
    steps = 4 * DEVICE_STEPS_PER_SYNC
    spec = spec_for("cuda", steps, **train)
    rows, syncs = rows_and_syncs(build_session(spec))
    assert len(rows) == spec.total_steps
    assert len(syncs) <= 4 * (spec.total_steps // DEVICE_STEPS_PER_SYNC + 2), [
        str(w.message) for w in syncs[:5]
    ]
