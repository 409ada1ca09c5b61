"""optcli's loop on a GPU against a plain loop that never waits for the GPU (its losses and norms kept
on the device, copied once at the end): what optcli adds to a step where a sync would cost most.

The guide's SimpleNN at batch 64 (launch-bound: the worst case for any per-step overhead) and a wider
model at batch 1024, interleaved in one process; then optcli at bf16 and fp16 against itself at 32
(informational: mixed precision pays off on larger matrices than these).

    python benchmarks/device.py [--steps 2000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import functools
import sys
import time
from typing import Any

import torch
from overhead import GUIDE_DATA, guide_spec, interleaved, time_optcli  # this folder: run as a script
from torch import nn

from optcli.config.spec import RunSpec
from optcli.train.session import build_session


def time_plain_no_sync(spec: RunSpec) -> float:
    session = build_session(spec)
    model, optimizer = session.model, session.optimizer
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=5, gamma=0.1)
    criterion = nn.CrossEntropyLoss()
    losses, norms = [], []
    step = 0
    torch.cuda.synchronize()
    start = time.perf_counter()
    while step < spec.total_steps:
        for inputs, labels in session.batches.epoch():
            optimizer.zero_grad(set_to_none=True)
            loss = criterion(model(inputs), labels)
            loss.backward()
            norms.append(nn.utils.clip_grad_norm_(model.parameters(), max_norm=1.0))
            optimizer.step()
            losses.append(loss.detach())
            step += 1
            if step == spec.total_steps:
                break
        scheduler.step()
    torch.stack(losses).cpu(), torch.stack(norms).cpu()  # the one copy to the host
    torch.cuda.synchronize()
    return time.perf_counter() - start


def synced(loop: Any) -> Any:
    def timed(spec: RunSpec) -> float:
        torch.cuda.synchronize()
        seconds = loop(spec)
        torch.cuda.synchronize()
        return seconds

    return timed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    arguments = parser.parse_args()
    print(f"torch {torch.__version__} on {torch.cuda.get_device_name()}")
    wide = {**GUIDE_DATA, "samples": 1024 * 8, "features": 1024, "batch_size": 1024}
    for label, data in (
        ("SimpleNN, batch 64", GUIDE_DATA),
        ("784->128 MLP on 1024 features, batch 1024", wide),
    ):
        spec = guide_spec(arguments.steps, data, device="cuda")
        totals = interleaved(
            {"plain": time_plain_no_sync, "optcli": synced(time_optcli)}, spec, arguments.rounds
        )
        print(
            f"{label}: plain {spec.total_steps * arguments.rounds / totals['plain']:.0f} steps/s, optcli "
            f"{spec.total_steps * arguments.rounds / totals['optcli']:.0f}; ratio optcli/plain {totals['plain'] / totals['optcli']:.3f}"
        )
    big = {**GUIDE_DATA, "samples": 4096 * 4, "features": 4096, "batch_size": 4096}
    loops = {
        precision: synced(functools.partial(time_optcli_at, precision=precision))
        for precision in ("32", "bf16", "fp16")
    }
    spec = guide_spec(arguments.steps // 4, big, device="cuda")
    totals = interleaved(loops, spec, arguments.rounds)
    rates = ", ".join(
        f"{name} {spec.total_steps * arguments.rounds / total:.0f} steps/s" for name, total in totals.items()
    )
    print(f"precision, 784->128 MLP on 4096 features, batch 4096: {rates}", file=sys.stdout)


def time_optcli_at(spec: RunSpec, precision: str) -> float:
    import dataclasses

    return time_optcli(
        dataclasses.replace(spec, train=spec.train.model_copy(update={"precision": precision}))
    )


if __name__ == "__main__":
    main()
