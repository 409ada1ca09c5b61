"""One seed per run, and independent, stable seeds derived from it for each use of randomness."""

from __future__ import annotations

import hashlib


def derive_seed(seed: int, purpose: str) -> int:
    """A seed for one purpose (the data, a split, the shuffling order) that no other purpose shares."""
    digest = hashlib.sha256(f"{seed}:{purpose}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1
