"""Text for language models: `data: {name: text, path: ..., block_size: 128, tokenizer: bytes}`.

The corpus is tokenised once into a flat file of token ids (one byte per token for `tokenizer: bytes`),
kept in a cache keyed by the corpus's own bytes, and memory-mapped: a run's memory does not grow with
the corpus, and concurrent runs share one file. A sample is a window of `block_size` tokens; its
targets are the same window shifted by one token. The windows are consecutive and do not overlap, so
an epoch is one pass over the training tokens, in an order drawn each epoch from the run's seeded
generator (as every in-memory dataset's is: resuming is exact). `val_fraction` and `test_fraction`
take the corpus's last windows (validation, then test), the same whatever the seed, as nanoGPT
holds out the last tenth of its text.

`path` is a file, a glob, a folder (its `*.py`, `*.txt` and `*.md` files, recursively) or
`stdlib:email,json`: the Python standard library's own sources of those packages, a corpus every
machine has, so that examples and CI need no download.
"""

from __future__ import annotations

import glob
import hashlib
import os
import sysconfig
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import torch

from optcli.data.in_memory import DataInfo, TensorData
from optcli.errors import ConfigError

STDLIB = "stdlib:"
FOLDER_SUFFIXES = (".py", ".txt", ".md", ".rst")
BYTE_VOCABULARY = 256


def cache_folder() -> Path:
    """Where token files are kept: $OPTCLI_CACHE, else $XDG_CACHE_HOME/optcli, else ~/.cache/optcli."""
    if os.environ.get("OPTCLI_CACHE"):
        return Path(os.environ["OPTCLI_CACHE"]) / "tokens"
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "optcli" / "tokens"


def corpus_files(path: str) -> list[Path]:
    """The files `path` names, in a fixed (sorted) order; a name that finds none is a ConfigError."""
    if path.startswith(STDLIB):
        return _stdlib_files(path.removeprefix(STDLIB))
    where = Path(path)
    if where.is_dir():
        files = sorted(p for p in where.rglob("*") if p.is_file() and p.suffix in FOLDER_SUFFIXES)
    elif where.is_file():
        files = [where]
    else:
        files = sorted(Path(p) for p in glob.glob(path, recursive=True) if Path(p).is_file())
    if not files:
        raise ConfigError(
            f"data.path: {path} names no text file (a file, a glob, a folder or stdlib:email,json)"
        )
    return files


def _stdlib_files(names: str) -> list[Path]:
    root = Path(sysconfig.get_paths()["stdlib"])
    files: list[Path] = []
    for name in (part.strip() for part in names.split(",")):
        package, module = root / name, root / f"{name}.py"
        if not name or not (package.is_dir() or module.is_file()):
            raise ConfigError(
                f"data.path: the standard library has no module or package {name!r} (in {root}); "
                "name some, as stdlib:email,json"
            )
        found = sorted(package.rglob("*.py")) if package.is_dir() else [module]
        files += [file for file in found if "__pycache__" not in file.parts]
    return files


class TextData:
    """A corpus as windows of byte tokens, memory-mapped (see the module's docstring)."""

    PATH_ARGUMENTS = ("path",)  # resolved relative to the config file (stdlib: names are kept)
    HOLDS_OUT_TAIL = True  # val_fraction and test_fraction take the last windows, not random ones

    def __init__(self, path: str, block_size: int = 128, tokenizer: Literal["bytes"] = "bytes") -> None:
        if block_size < 1:
            raise ConfigError(f"block_size: must be at least 1, got {block_size}")
        self.path, self.block_size, self.tokenizer = path, block_size, tokenizer
        self.files = corpus_files(path)
        self.token_count = sum(file.stat().st_size for file in self.files)
        if self.token_count < block_size + 1:
            raise ConfigError(
                f"data.block_size: {path} holds {self.token_count} tokens, fewer than one window of "
                f"block_size + 1 = {block_size + 1}; give more text or a smaller block_size"
            )

    @property
    def windows(self) -> int:
        return (self.token_count - 1) // self.block_size

    def describe(self) -> DataInfo:
        return DataInfo(
            self.windows,
            (self.block_size,),
            BYTE_VOCABULARY,
            sequence_length=self.block_size,
            tokenizer=self.tokenizer,
        )

    def load(self, seed: int, split: str = "train") -> TensorData:
        """Every window of the corpus, as views of the memory-mapped token file (nothing copied)."""
        path, digest = self.token_file()
        tokens = torch.from_file(str(path), shared=False, size=self.token_count, dtype=torch.uint8)
        count, width = self.windows, self.block_size
        inputs = tokens[: count * width].view(count, width)
        targets = tokens[1 : count * width + 1].view(count, width)
        return TensorData(inputs, targets, tokens=True, fingerprint=f"{digest}:{width}")

    def token_file(self) -> tuple[Path, str]:
        """The corpus's token file (written once, atomically) and the hash of its tokens."""
        digest = hashlib.sha256()
        for chunk in self._chunks():
            digest.update(chunk)
        name = digest.hexdigest()
        path = cache_folder() / f"{name[:32]}.{self.tokenizer}.u8"
        if not path.is_file() or path.stat().st_size != self.token_count:
            path.parent.mkdir(parents=True, exist_ok=True)
            partial = path.with_name(f"{path.name}.{os.getpid()}.partial")
            with partial.open("wb") as out:
                for chunk in self._chunks():
                    out.write(chunk)
            os.replace(partial, path)  # concurrent runs each write the same bytes; either one wins
        return path, name[:16]

    def _chunks(self, size: int = 1 << 20) -> Iterator[bytes]:
        """The corpus's bytes a megabyte at a time (its memory does not grow with the corpus)."""
        for file in self.files:
            with file.open("rb") as stream:
                while chunk := stream.read(size):
                    yield chunk


def decode(tokens: list[int], tokenizer: str) -> str:
    """Token ids as text (bytes that are not UTF-8 shown as replacement characters)."""
    return bytes(tokens).decode("utf-8", errors="replace")


def encode(text: str, tokenizer: str) -> list[int]:
    return list(text.encode("utf-8"))
