"""A language model through optcli against a hand-written nanoGPT-style loop doing the same work, and
a run's memory over a corpus 50 times larger.

Speed: `configs/lm_stdlib.yaml`'s model, data, optimizer, schedule and clipping (its validation left
out: the hand-written loop has none), `--steps` steps a round, the two loops interleaved in one
process with the same thread count, so that machine noise hits both alike. The hand-written loop
indexes the same windows of the same token file in the same seeded order, widens them to int64,
computes `F.cross_entropy(logits.view(-1, V), targets.view(-1))`, clips, steps AdamW and the
scheduler, and reads the loss every step (`.item()`), as nanoGPT's loop does. The figure is the ratio
of tokens per second.

Memory: `optcli train` in a process of its own on the email sources once and 50 times over (the same
text repeated, 18 MB, and 150 times, 54 MB), 20 steps each with validation; the figures are each process's peak resident
memory, and its anonymous (not file-backed) memory at the end, which is what a corpus loaded into
memory would grow.

    python benchmarks/lm_throughput.py [--steps 40] [--rounds 4] [--threads N]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import yaml
from overhead import interleaved, time_optcli
from torch.nn import functional

from optcli.config.loading import RawConfig
from optcli.config.resolve import resolve_config
from optcli.config.spec import RunSpec
from optcli.train.session import build_session

REPO = Path(__file__).resolve().parent.parent
CONFIG = REPO / "configs" / "lm_stdlib.yaml"


def lm_spec(steps: int, threads: int) -> RunSpec:
    values = yaml.safe_load(CONFIG.read_text())
    values["data"].pop("val_fraction")
    values["train"] = {"epochs": 1000, "max_steps": steps, "threads": threads}
    return resolve_config(RawConfig(values, CONFIG.parent, "lm_stdlib"))


def time_hand_written(spec: RunSpec) -> float:
    """nanoGPT's loop over the same windows, weights, optimizer and schedule (built by optcli, not timed)."""
    session = build_session(spec)
    model, optimizer, scheduler = session.model, session.optimizer, session.scheduler
    inputs, targets = session.batches.inputs, session.batches.targets  # type: ignore[attr-defined]
    batch_size = spec.data.loader.batch_size
    order_generator = torch.Generator().manual_seed(0)
    losses = []
    start = time.perf_counter()
    step = 0
    while step < spec.total_steps:
        order = torch.randperm(len(inputs), generator=order_generator)
        for first in range(0, len(order) - batch_size + 1, batch_size):
            rows = order[first : first + batch_size]
            x, y = inputs[rows].long(), targets[rows].long()
            optimizer.zero_grad(set_to_none=True)
            logits = model(x)
            loss = functional.cross_entropy(logits.view(-1, logits.size(-1)), y.view(-1))
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            scheduler.step()
            losses.append(loss.item())
            step += 1
            if step == spec.total_steps:
                break
    return time.perf_counter() - start


def memory_of_a_run(corpus: Path, out: Path) -> tuple[float, float]:
    """Peak resident and final anonymous memory (MiB) of `optcli train` on `corpus`, 20 steps."""
    probe = (
        "import resource, sys\n"
        "from optcli.cli import main\n"
        "sys.argv = ['optcli', 'train', sys.argv[1], '--quiet', '--out', sys.argv[2], '--set', 'data.path=' + sys.argv[3],"
        " '--set', 'train.max_steps=20', '--set', 'train.epochs=1', '--set', 'train.eval_every=10']\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "anonymous = next(int(line.split()[1]) for line in open('/proc/self/status') if line.startswith('RssAnon'))\n"
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, anonymous / 1024)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe, str(CONFIG), str(out), str(corpus)],
        capture_output=True,
        text=True,
        check=True,
    )
    peak, anonymous = result.stdout.split()[-2:]
    return float(peak), float(anonymous)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    arguments = parser.parse_args()
    torch.set_num_threads(arguments.threads)
    spec = lm_spec(arguments.steps, arguments.threads)
    tokens = arguments.steps * spec.data.loader.batch_size * spec.data.info.sequence_length  # type: ignore[operator]
    totals = interleaved({"hand-written": time_hand_written, "optcli": time_optcli}, spec, arguments.rounds)
    for name, seconds in totals.items():
        print(f"{name:13} {tokens * arguments.rounds / seconds:10.0f} tokens/s")
    print(
        f"ratio optcli/hand-written: {totals['hand-written'] / totals['optcli']:.3f} ({arguments.threads} threads)"
    )

    import sysconfig

    email = sorted((Path(sysconfig.get_paths()["stdlib"]) / "email").rglob("*.py"))
    text = b"".join(file.read_bytes() for file in email)
    with tempfile.TemporaryDirectory() as folder:
        for copies in (1, 50, 150):
            corpus = Path(folder) / f"email_x{copies}.txt"
            corpus.write_bytes(text * copies)
            peak, anonymous = memory_of_a_run(corpus, Path(folder) / "runs")
            size = corpus.stat().st_size / 2**20
            print(
                f"corpus {size:6.1f} MiB: peak resident {peak:6.0f} MiB, anonymous at the end {anonymous:6.0f} MiB"
            )


if __name__ == "__main__":
    main()
