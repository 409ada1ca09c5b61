"""Matching names the way users type them: case, underscores and hyphens do not matter."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


def normalize_name(name: str) -> str:
    """`Step_LR`, `step-lr` and `steplr` all normalize to `steplr`."""
    return name.replace("_", "").replace("-", "").lower()


# Other libraries' names for torch's arguments (Keras, Hugging Face, papers), normalized: no spelling
# is close, so edit distance cannot suggest them.
SYNONYMS = {
    "learningrate": "lr",
    "learningrateinit": "lr",
    "wd": "weightdecay",
    "decay": "weightdecay",
    "epsilon": "eps",
    "beta": "betas",
    "mom": "momentum",
}


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """A ' (did you mean 'x'?)' suffix for the closest choice, or '' when nothing is close."""
    by_normal = {normalize_name(choice): choice for choice in choices}
    typed = normalize_name(name)
    if not by_normal or not typed:
        return ""
    synonym = SYNONYMS.get(typed)
    if synonym in by_normal:
        return f" (did you mean '{by_normal[synonym]}'?)"
    # Typos are mostly one slip (a swap, a missing or extra letter): edit distance catches those,
    # and difflib catches the rest (a prefix, a longer fragment).
    best = min(by_normal, key=lambda candidate: (_edit_distance(typed, candidate), candidate))
    if _edit_distance(typed, best) <= max(1, len(typed) // 4):
        return f" (did you mean '{by_normal[best]}'?)"
    close = difflib.get_close_matches(typed, list(by_normal), n=1, cutoff=0.7)
    return f" (did you mean '{by_normal[close[0]]}'?)" if close else ""


def _edit_distance(a: str, b: str) -> int:
    """Optimal-string-alignment distance: insertions, deletions, substitutions and adjacent swaps."""
    previous2: list[int] = []
    previous = list(range(len(b) + 1))
    for i in range(1, len(a) + 1):
        current = [i] + [0] * len(b)
        for j in range(1, len(b) + 1):
            cost = 0 if a[i - 1] == b[j - 1] else 1
            current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + cost)
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                current[j] = min(current[j], previous2[j - 2] + 1)
        previous2, previous = previous, current
    return previous[len(b)]


def unknown_name_message(
    what: str, name: str, choices: Iterable[str], also_known_as: Iterable[str] = ()
) -> str:
    """'unknown optimizer 'adma' (did you mean 'Adam'?); choose from: ...'; aliases count as suggestions."""
    choices = sorted(choices, key=str.lower)
    suggestion = did_you_mean(name, [*choices, *also_known_as])
    return f"unknown {what} '{name}'{suggestion}; choose from: {', '.join(choices)}"
