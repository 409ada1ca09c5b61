"""What metrics cost an evaluation: configs/digits_adam.yaml with the CNN (the shipped small CNN),
its validation split evaluated with the default metrics (the loss and accuracy) and with five more
(f1, precision, recall, top-3 accuracy, AUROC). Metrics are computed at evaluations only, never in a
training step; the target is about 1.2x.

Evaluations alternate between the two settings so that machine noise hits both alike; the ratio is
of the medians.

    python benchmarks/metrics_cost.py [--rounds 200]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

from optcli.config.loading import load_config
from optcli.config.resolve import resolve_config
from optcli.train.evaluation import evaluate
from optcli.train.session import build_session

REPO = Path(__file__).resolve().parent.parent
FIVE = "[accuracy, f1, precision, recall, {name: top_k_accuracy, k: 3}, auroc]"


def timed_evaluation(metrics: str | None, rounds: int) -> tuple[list[float], dict[str, float]]:
    settings = ["model.name=cnn", "train.threads=1"] + ([f"metrics={metrics}"] if metrics else [])
    spec = resolve_config(load_config(REPO / "configs" / "digits_adam.yaml", settings))
    session = build_session(spec)
    assert session.val_batches is not None
    times, values = [], {}
    for _ in range(rounds):
        start = time.perf_counter()
        values = evaluate(
            session.model, session.val_batches, session.loss_function, spec.forward, spec.metrics, True
        ).values
        times.append(time.perf_counter() - start)
    return times, values


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=200)
    rounds = parser.parse_args().rounds
    torch.set_num_threads(1)
    default, five = [], []
    for _ in range(5):  # alternating blocks
        default += timed_evaluation(None, rounds // 5)[0]
        found, values = timed_evaluation(FIVE, rounds // 5)
        five += found
    ratio = statistics.median(five) / statistics.median(default)
    print(f"default metrics: median {statistics.median(default) * 1e3:.2f} ms per evaluation")
    print(
        f"six metrics:     median {statistics.median(five) * 1e3:.2f} ms per evaluation ({', '.join(values)})"
    )
    print(f"ratio: {ratio:.3f} (target <= about 1.2)")


if __name__ == "__main__":
    main()
