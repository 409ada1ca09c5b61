"""Name -> class registries, one per kind, and loading classes by import path.

Lookups ignore case, underscores and hyphens, plus a suffix a kind makes optional (`lr` for schedulers,
`loss` for losses), and never return None: an unknown name raises with the choices and a did-you-mean.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from optcli.errors import ConfigError
from optcli.extras import extra_of, install_command
from optcli.name_matching import normalize_name, unknown_name_message


@dataclass(frozen=True)
class Entry:
    """A registered name: the class or builder it stands for, and preset arguments."""

    name: str
    target: Callable[..., Any]
    presets: dict[str, Any] = field(default_factory=dict)  # e.g. `momentum` is SGD with momentum 0.9
    unavailable: str | None = None  # why a config cannot use it, e.g. it needs a Python function
    summary: str = ""


class Registry:
    """One kind of thing a config can name (optimizers, schedulers, models, datasets, losses)."""

    def __init__(
        self,
        kind: str,
        optional_suffix: str = "",
        supplied_by_code: frozenset[str] = frozenset(),
        requirement: tuple[Callable[[Any], bool], str] | None = None,
        found_elsewhere: Callable[[str], list[str]] | None = None,
    ) -> None:
        self.kind = kind
        self.optional_suffix = optional_suffix
        self.supplied_by_code = supplied_by_code  # arguments optcli passes itself (the params, the optimizer)
        # What a class named by import path must be for this kind, and those words for the message.
        self.requirement = requirement
        # For an unknown name: import paths of packages that provide it (`lion` -> lion_pytorch:Lion).
        self.found_elsewhere = found_elsewhere
        self._entries: dict[str, Entry] = {}
        self._keys: dict[str, str] = {}  # lookup key -> entry name
        self._aliases: list[str] = []  # other spellings, offered as did-you-mean suggestions

    def add(
        self,
        name: str,
        target: Callable[..., Any],
        *,
        aliases: tuple[str, ...] = (),
        presets: dict[str, Any] | None = None,
        unavailable: str | None = None,
        summary: str = "",
    ) -> None:
        self._entries[name] = Entry(name, target, presets or {}, unavailable, summary)
        for alias in (name, *aliases):
            self._keys[self._key(alias)] = name
        self._aliases += aliases

    def _key(self, name: str) -> str:
        key = normalize_name(name)
        suffix = self.optional_suffix
        if suffix and key.endswith(suffix) and len(key) > len(suffix):
            key = key[: -len(suffix)]
        return key

    def entries(self) -> list[Entry]:
        return sorted(self._entries.values(), key=lambda entry: entry.name.lower())

    def get(self, name: str, base_dir: Path | None = None) -> Entry:
        """The entry for a name, or for `package.module:Class` / `path/file.py:Class` import paths."""
        if ":" in name:
            accepts = self.requirement[0] if self.requirement is not None else None
            target = import_object(name, base_dir or Path.cwd(), accepts)
            if self.requirement is not None and not self.requirement[0](target):
                what = getattr(target, "__name__", type(target).__name__)
                raise ConfigError(
                    f"'{name}' ({what}) is not {self.requirement[1]}, which a {self.kind} must be"
                )
            return Entry(name, target)
        found = self._keys.get(self._key(name))
        if found is None:
            message = unknown_name_message(self.kind, name, self._entries, self._aliases)
            elsewhere = self.found_elsewhere(name) if self.found_elsewhere else []
            if elsewhere:
                message += (
                    f"; not a registry name, but {' or '.join(elsewhere)} provides it as an import path"
                )
            elif "." in name.strip(".") and not name.endswith(".py"):  # a dotted path, as Hydra writes them
                module, _, attribute = name.rpartition(".")
                message += f"; an import path takes a colon before the class: '{module}:{attribute}'"
            raise ConfigError(message)
        entry = self._entries[found]
        if entry.unavailable:
            raise ConfigError(f"{self.kind} '{entry.name}' cannot be used from a config: {entry.unavailable}")
        return entry


def import_object(spec: str, base_dir: Path, accepts: Callable[[Any], bool] | None = None) -> Any:
    """Load `package.module:Name` or `path/to/file.py:Name` (a file path is relative to `base_dir`).
    For a name the module lacks, the choices listed are those `accepts` (what the section can use)."""
    module_part, _, attribute = spec.rpartition(":")
    if not module_part or not attribute:
        raise ConfigError(f"'{spec}' is not an import path; write 'package.module:Class' or 'file.py:Class'")
    if module_part.endswith(".py"):
        module = _import_file(base_dir / module_part, spec)
    else:
        try:
            module = importlib.import_module(module_part)
        except ImportError as error:
            extra = extra_of(module_part)
            hint = f" ({install_command(extra)})" if extra else ""
            raise ConfigError(f"'{spec}': cannot import module '{module_part}': {error}{hint}") from None
        except Exception as error:
            raise ConfigError(
                f"'{spec}': importing '{module_part}' failed: {type(error).__name__}: {error}"
            ) from None
    try:
        return getattr(module, attribute)
    except AttributeError:
        public = [
            name
            for name, value in vars(module).items()
            if not name.startswith("_") and (accepts is None or _accepted(accepts, value))
        ]
        raise ConfigError(unknown_name_message(f"name in '{module_part}'", attribute, public)) from None


def _accepted(accepts: Callable[[Any], bool], value: Any) -> bool:
    try:
        return bool(accepts(value))
    except Exception:
        return False


def _import_file(path: Path, spec: str) -> Any:
    path = path.resolve()
    if not path.is_file():
        raise ConfigError(f"'{spec}': no such file {path}")
    module_name = f"optcli_user_{path.stem}_{abs(hash(str(path)))}"
    if module_name in sys.modules:
        return sys.modules[module_name]
    module_spec = importlib.util.spec_from_file_location(module_name, path)
    if module_spec is None or module_spec.loader is None:
        raise ConfigError(f"'{spec}': cannot load {path} as a Python module")
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[module_name] = module
    folder = str(path.parent)
    before = set(sys.modules)
    # The file's own folder is importable while it runs, as it is for `python file.py`: a model file
    # may import its neighbour (`from gpt import GPT`) without PYTHONPATH.
    sys.path.insert(0, folder)
    try:
        module_spec.loader.exec_module(module)
    except Exception as error:
        del sys.modules[module_name]
        raise ConfigError(f"'{spec}': running {path} failed: {type(error).__name__}: {error}") from None
    finally:
        sys.path.remove(folder)
    NEIGHBOURS[str(path)] = tuple(
        sorted(
            file
            for name in set(sys.modules) - before - {module_name}
            if (file := getattr(sys.modules[name], "__file__", None)) and Path(file).is_relative_to(folder)
        )
    )
    return module


# The files of the user's own that a loaded file imported from its folder (by the file's path): code
# the run depends on, hashed into summary.json's code_sha256 with the file itself.
NEIGHBOURS: dict[str, tuple[str, ...]] = {}


def imported_neighbours(file: str) -> tuple[str, ...]:
    return NEIGHBOURS.get(str(Path(file).resolve()), ())
