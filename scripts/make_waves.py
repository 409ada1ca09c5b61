"""Writes configs/data/waves/*.csv, the small data of configs/waves.yaml (a Dataset of one's own).

Four kinds of waveform (sine, square, triangle, sawtooth), one CSV file per kind, 60 rows of 48
samples each, with random frequency, phase, amplitude and noise, so that kinds overlap a little.
Seeded: it writes the same bytes on every run. Only the standard library, so it runs anywhere:

    python scripts/make_waves.py
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from pathlib import Path

LENGTH, ROWS_PER_KIND = 48, 60
FOLDER = Path(__file__).resolve().parent.parent / "configs" / "data" / "waves"


def _triangle(phase: float) -> float:
    return 2 * abs(2 * (phase - math.floor(phase + 0.5))) - 1


KINDS: dict[str, Callable[[float], float]] = {
    "sine": lambda phase: math.sin(2 * math.pi * phase),
    "square": lambda phase: 1.0 if phase % 1 < 0.5 else -1.0,
    "triangle": _triangle,
    "sawtooth": lambda phase: 2 * (phase % 1) - 1,
}


def main() -> None:
    generator = random.Random(11)
    FOLDER.mkdir(parents=True, exist_ok=True)
    for kind, wave in KINDS.items():
        rows = []
        for _ in range(ROWS_PER_KIND):
            cycles, start = generator.uniform(1.5, 4.0), generator.random()
            amplitude = generator.uniform(0.6, 1.4)
            values = [
                amplitude * wave(start + cycles * index / LENGTH) + generator.gauss(0, 0.15)
                for index in range(LENGTH)
            ]
            rows.append(",".join(f"{value:.3f}" for value in values))
        (FOLDER / f"{kind}.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    print(f"wrote {len(KINDS)} files of {ROWS_PER_KIND} waveforms to {FOLDER}")


if __name__ == "__main__":
    main()
