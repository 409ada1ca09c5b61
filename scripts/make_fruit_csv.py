"""Writes configs/data/fruit.csv, the small CSV example that configs/fruit_csv.yaml trains on.

Four kinds of fruit, told apart by weight, diameter, skin hue and sugar content, each measured with
noise; the kinds overlap, so a model has to learn the boundaries. Seeded: it writes the same bytes on
every run. Only the standard library, so it runs anywhere:

    python scripts/make_fruit_csv.py
"""

from __future__ import annotations

import random
from pathlib import Path

# kind: (weight g, diameter cm, hue degrees, sugar %) means and spreads
KINDS = {
    "apple": ((170, 25), (7.5, 0.6), (20, 25), (10.5, 1.2)),
    "orange": ((200, 30), (8.0, 0.7), (35, 6), (9.0, 1.0)),
    "lemon": ((110, 20), (6.0, 0.5), (55, 6), (2.5, 0.8)),
    "pear": ((180, 30), (6.8, 0.6), (75, 15), (10.0, 1.3)),
}
ROWS_PER_KIND = 60
PATH = Path(__file__).resolve().parent.parent / "configs" / "data" / "fruit.csv"


def main() -> None:
    generator = random.Random(7)
    rows = []
    for kind, measures in KINDS.items():
        for _ in range(ROWS_PER_KIND):
            values = [generator.gauss(mean, spread) for mean, spread in measures]
            rows.append(
                [f"{values[0]:.0f}", f"{values[1]:.2f}", f"{values[2] % 360:.0f}", f"{values[3]:.1f}", kind]
            )
    generator.shuffle(rows)
    lines = ["weight_g,diameter_cm,hue_deg,sugar_pct,fruit", *(",".join(row) for row in rows)]
    PATH.parent.mkdir(parents=True, exist_ok=True)
    PATH.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"wrote {len(rows)} rows to {PATH}")


if __name__ == "__main__":
    main()
