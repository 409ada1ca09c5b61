"""optcli's optional extras (`pip install 'optcli[onnx]'`), read from its own package metadata, so that
pyproject.toml stays the one place that says which extra installs which package: whether an extra's
packages are here, and the words that say how to install them when they are not."""

from __future__ import annotations

import functools
import importlib.metadata
import importlib.util
import re

# Distributions imported under another name than their own.
IMPORT_NAMES = {"scikit-learn": "sklearn", "mlflow-skinny": "mlflow"}
_REQUIREMENT = re.compile(r"\s*([A-Za-z0-9][A-Za-z0-9._\-]*).*;\s*extra\s*==\s*['\"]([^'\"]+)['\"]")


@functools.cache
def extras() -> dict[str, tuple[str, ...]]:
    """Each extra (but dev) and the import names of its packages; empty when optcli runs from a
    source tree that was never installed (then nothing can be said to be missing)."""
    try:
        requirements = importlib.metadata.requires("optcli") or []
    except importlib.metadata.PackageNotFoundError:
        return {}
    found: dict[str, list[str]] = {}
    for requirement in requirements:
        match = _REQUIREMENT.match(requirement)
        if match and match[2] != "dev":
            name = match[1].lower()
            found.setdefault(match[2], []).append(IMPORT_NAMES.get(name, name.replace("-", "_")))
    return {extra: tuple(packages) for extra, packages in found.items()}


def install_command(extra: str) -> str:
    return f"pip install 'optcli[{extra}]'"


def needs(extra: str) -> str:
    """`needs the onnx extra: pip install 'optcli[onnx]'`, for a message naming what needs it."""
    return f"needs the {extra} extra: {install_command(extra)}"


def missing(extra: str) -> list[str]:
    """The extra's packages that cannot be imported here (looked up now: nothing is imported)."""
    return [package for package in extras().get(extra, ()) if importlib.util.find_spec(package) is None]


def extra_of(module: str) -> str | None:
    """The extra that installs the top-level package `module` (transformers: transformers)."""
    top = module.partition(".")[0]
    return next((extra for extra, packages in extras().items() if top in packages), None)
