"""CSV tables: a training table read whole (CsvData), and a table of inputs to predict on read in
blocks (table_blocks). MNIST-format IDX files are idx.py's.

A training table is read once per process (cached on path and modification time), so checking a
config and training from it do not read twice; every problem with a file is a ConfigError naming it.
"""

from __future__ import annotations

import array
import contextlib
import csv
import functools
import itertools
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy
import torch

from optcli.data.in_memory import DataInfo, TensorData, modified_time
from optcli.errors import ConfigError

# An integer target with at most this many distinct values is taken for class labels.
MAX_CLASSES_GUESSED = 20


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


class CsvData:
    """A CSV table: one column is the target, the others (or `features`) the inputs.

    String labels become class indices in sorted order (the names are saved with the run); a
    numeric target is a class label when it holds few distinct integers, else a regression target.
    """

    PATH_ARGUMENTS = ("path",)

    def __init__(
        self,
        path: str,
        target: str | int,
        features: list[str | int] | None = None,
        delimiter: str | None = None,
        header: bool | None = None,
        task: Literal["classification", "regression"] | None = None,
    ):
        self.path, self.target, self.features = path, target, features
        self.delimiter, self.header, self.task = delimiter, header, task

    def _columns(self, names: list[str]) -> tuple[int, list[int]]:
        """The target's column index and the feature columns' indices."""
        target = _column_index(self.target, names, "target")
        if self.features is None:
            features = [index for index in range(len(names)) if index != target]
        else:
            features = [_column_index(feature, names, "features") for feature in self.features]
            if target in features:
                raise ConfigError(f"features: the target column '{names[target]}' cannot also be a feature")
        if not features:
            raise ConfigError(f"path: {self.path} has no columns besides the target")
        return target, features

    def describe(self) -> DataInfo:
        return self._parse()[0]

    def load(self, seed: int, split: str = "train") -> TensorData:
        return self._parse()[1]

    @functools.cache  # noqa: B019 - one parse per dataset object; they live as long as a run
    def _parse(self) -> tuple[DataInfo, TensorData]:
        path = Path(self.path)
        modified_time(path, "path")  # (a missing file: a ConfigError naming the key)
        table = _read_table(path, self.delimiter, self.header, self._columns)
        inputs, labels, lines = table.inputs, table.labels, table.lines
        target = table.target
        columns = (tuple(table.names[index] for index in table.features), table.names[target])
        classification, reason = self._task(labels, table.names[target])
        if classification:
            class_names = _sorted_labels(labels)
            position = {name: index for index, name in enumerate(class_names)}
            targets = torch.tensor([position[label] for label in labels], dtype=torch.long)
            info = DataInfo(
                len(labels),
                (inputs.shape[1],),
                len(class_names),
                class_names=tuple(class_names),
                task_reason=reason,
                column_names=columns,
            )
        else:
            bad = next((index for index, label in enumerate(labels) if not _is_finite(label)), None)
            if bad is not None:
                cell = labels[bad]
                kind = "a finite number; fill or drop that row" if _is_number(cell) else "a number"
                raise ConfigError(f"target: line {lines[bad]} of {self.path} has '{cell}', not {kind}")
            targets = torch.tensor([[float(label)] for label in labels], dtype=torch.get_default_dtype())
            info = DataInfo(
                len(labels), (inputs.shape[1],), None, 1, task_reason=reason, column_names=columns
            )
        return info, TensorData(inputs, targets)

    def _task(self, labels: list[str], column: str) -> tuple[bool, str]:
        """Whether the target holds class labels, and, when that is a guess, why (said to the user)."""
        if self.task is not None:
            return self.task == "classification", ""
        if not all(_is_number(label) for label in labels):
            return True, f"classification: target '{column}' holds text labels ({len(set(labels))} classes)"
        numbers = {float(label) for label in labels}
        if not all(number.is_integer() for number in numbers):
            return False, f"regression: target '{column}' holds non-integer numbers"
        count = len(numbers)
        if count <= MAX_CLASSES_GUESSED:
            return True, (
                f"classification: target '{column}' has {count} distinct integer values (at most "
                f"{MAX_CLASSES_GUESSED} are taken for classes); set data.task: regression if they are values"
            )
        return False, (
            f"regression: target '{column}' has {count} distinct integer values; set data.task: "
            "classification if they are classes"
        )


def _is_finite(text: str) -> bool:
    return _is_number(text) and math.isfinite(float(text))


def _sorted_labels(labels: list[str]) -> list[str]:
    unique = set(labels)
    if all(_is_number(label) for label in unique):
        return sorted(unique, key=float)  # 2 before 10
    return sorted(unique)


def _number(row: list[str], index: int, names: list[str], line: int, key: str | None) -> float:
    """A feature cell's value; a bad one a ConfigError naming its line and column (and, where the
    config chose the columns, the key that does: `features`; else the file's, `key`)."""
    text = row[index].strip()
    try:
        value = float(text)
    except ValueError:
        what = "is empty" if not text else f"has '{text}'"
        hint = "; list the numeric columns in features:" if key is None else ""
        raise ConfigError(
            f"{key or 'features'}: column '{names[index]}' {what} on line {line}, not a number{hint}"
        ) from None
    if not math.isfinite(value):  # nan, inf: the run would train into a non-finite loss
        raise ConfigError(
            f"{key or 'features'}: column '{names[index]}' has {text} on line {line}; fill or drop that row "
            "(the model needs finite values)"
        )
    return value


def _column_index(column: str | int, names: list[str], key: str) -> int:
    if isinstance(column, int) and not isinstance(column, bool):
        if not 0 <= column < len(names):
            raise ConfigError(
                f"{key}: column {column} does not exist; the table has columns 0 to {len(names) - 1}"
            )
        return column
    if column in names:
        return names.index(column)
    from optcli.name_matching import unknown_name_message

    raise ConfigError(f"{key}: " + unknown_name_message("column", str(column), names))


@dataclass
class _Table:
    names: list[str]
    target: int
    features: list[int]
    inputs: torch.Tensor  # the feature columns, as the default float dtype
    labels: list[str]  # the target column's cells, stripped
    lines: array.array[int]  # each row's line in the file, for messages


def _read_table(
    path: Path,
    delimiter: str | None,
    header: bool | None,
    columns: Callable[[list[str]], tuple[int, list[int]]],
) -> _Table:
    """One pass over the file, into one flat float array (no row of strings is kept: a table takes
    about its tensor's size, not thirty times it). The header and the first rows are read by the csv
    module; the rest in blocks of lines parsed by numpy's C reader, any block it cannot take whole (a
    quote, a blank row, a bad cell) by the csv module, so that every bad cell is a ConfigError naming
    its line and column."""
    with _opened(path, delimiter, "path") as (stream, sniffed):
        return _parse_rows(path, stream, sniffed, header, columns)


@contextlib.contextmanager
def _opened(path: Path, delimiter: str | None, key: str) -> Iterator[tuple[Any, str]]:
    """The file open for the csv module, and its delimiter (sniffed when not given); a file that
    cannot be read as a table is a ConfigError naming `key`."""
    try:
        with path.open(encoding="utf-8-sig", newline="") as stream:
            sample = stream.read(4096)
            stream.seek(0)
            if delimiter is None:
                try:
                    delimiter = csv.Sniffer().sniff(sample, delimiters=",;\t|").delimiter
                except csv.Error:
                    delimiter = ","
            yield stream, delimiter
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"{key}: cannot read {path}: {error}") from None
    except csv.Error as error:
        raise ConfigError(f"{key}: {path} is not a CSV table optcli can read: {error}") from None


@dataclass(frozen=True)
class TableBlock:
    """Consecutive rows of a table to predict from: the features, the target's cells when the table
    has them, each row's line in the file."""

    inputs: torch.Tensor
    labels: list[str] | None
    lines: array.array[int]


def table_blocks(
    path: Path, features: list[str], target: str, delimiter: str | None, key: str
) -> Iterator[TableBlock]:
    """A table of new rows, a block at a time (memory does not grow with the file): the run's feature
    columns found by name in its header, in any order (or by position where the run's table had no
    header: the run's columns, or its features alone); the target's cells when it has that column. A
    missing or an unknown column, a bad cell: a ConfigError naming `key`, the line and the column."""
    with _opened(path, delimiter, key) as (stream, sniffed):
        reader = csv.reader(stream, delimiter=sniffed)
        first = next(_non_blank(reader), None)
        if first is None:
            raise ConfigError(f"{key}: {path} has no rows")
        cells = [cell.strip() for cell in first[1]]
        positional = all(name.isdigit() for name in [*features, target])
        if positional:
            if len(cells) not in (len(features), len(features) + 1):
                raise ConfigError(
                    f"{key}: {path} has {len(cells)} columns; the run's model reads {len(features)} features "
                    f"(and its table had {len(features) + 1} columns with the target)"
                )
            names = [str(index) for index in range(len(cells))] if len(cells) > len(features) else features
            header = not all(_is_number(cell) for cell in cells)  # a header row of any names: skipped
        else:
            names, header = cells, True
            twice = sorted({name for name in names if names.count(name) > 1})
            if twice:  # (the first would be read and the other dropped, unseen)
                raise ConfigError(f"{key}: {path} has the column {', '.join(twice)} more than once")
            missing = [name for name in features if name not in names]
            unknown = [name for name in names if name not in features and name != target]
            if missing or unknown:
                problems = ([f"missing {', '.join(missing)}"] if missing else []) + (
                    [f"not the run's: {', '.join(unknown)}"] if unknown else []
                )
                raise ConfigError(
                    f"{key}: the columns of {path} are not the run's features ({'; '.join(problems)}); the run "
                    f"reads {', '.join(features)}"
                    + (f" and the target {target}" if target not in features else "")
                )
        has_target = target in names
        if not has_target and len(names) != len(features):
            raise ConfigError(
                f"{key}: {path} has {len(names)} columns; the run's model reads {len(features)} features"
            )
        target_index = names.index(target) if has_target else None
        table = _Columns(path, sniffed, names, target_index, [names.index(f) for f in features], key)
        if not header:
            table.add_rows(iter([first]))
        for _ in _read_blocks(stream, table, reader.line_num):
            inputs, labels, lines = table.take()
            yield TableBlock(inputs, labels if has_target else None, lines)
        inputs, labels, lines = table.take()
        if len(lines):
            yield TableBlock(inputs, labels if has_target else None, lines)


BLOCK_BYTES = 4 * 2**20  # the lines numpy parses at a time: bounded memory beside the table


def _non_blank(reader: Any, first_line: int = 0) -> Iterator[tuple[int, list[str]]]:
    """(line, row) for every row with a cell that is not blank."""
    for row in reader:
        if any(cell.strip() for cell in row):
            yield first_line + reader.line_num, row


@dataclass
class _Columns:
    """The columns as the header (or the first row) gives them, and the rows read since the last
    `take`: the feature cells in one flat float array, the target's cells as text."""

    path: Path
    delimiter: str
    names: list[str]
    target: int | None  # None: the table has no target column (rows to predict)
    features: list[int]
    key: str | None = None  # what a bad cell's message names: the config's `features` when None
    values: array.array[float] = field(init=False)
    labels: list[str] = field(default_factory=list)
    lines: array.array[int] = field(default_factory=lambda: array.array("q"))

    def __post_init__(self) -> None:
        self.values = array.array("d" if torch.get_default_dtype() == torch.float64 else "f")

    def add_rows(self, rows: Iterator[tuple[int, list[str]]]) -> None:
        """The csv module's rows, cell by cell: the path that names every bad cell (each column's
        first, all at once, so that one fix of the file is not followed by the next message)."""
        width = len(self.names)
        bad: dict[int, str] = {}  # a feature column's first bad cell, by column
        for line, row in rows:
            if len(row) != width:
                raise ConfigError(
                    f"{self.key or 'path'}: line {line} of {self.path} has {len(row)} columns, the first has {width}"
                )
            for index in self.features:
                try:
                    self.values.append(_number(row, index, self.names, line, self.key))
                except ConfigError as error:
                    bad.setdefault(index, error.problems[0])
                    self.values.append(math.nan)
            if self.target is not None:
                self.labels.append(row[self.target].strip())
            self.lines.append(line)
        if bad:
            raise ConfigError([bad[index] for index in sorted(bad)])

    def add_block(self, block: list[str], first_line: int) -> bool:
        """A block of whole lines through numpy's C parser (bit for bit what float() gives); False,
        with nothing added, where the block needs the csv module's reading."""
        separators = len(self.names) - 1
        if any(line.count(self.delimiter) != separators or not line.strip() for line in block):
            return False
        dtype = numpy.float64 if self.values.typecode == "d" else numpy.float32
        read = functools.partial(numpy.loadtxt, block, delimiter=self.delimiter, comments=None)
        try:
            parsed = read(dtype=dtype, usecols=self.features, ndmin=2)
            labels = read(dtype=str, usecols=[self.target], ndmin=1) if self.target is not None else None
        except ValueError:
            return False
        if not numpy.isfinite(parsed).all():
            return False
        self.values.frombytes(parsed.tobytes())
        if labels is not None:
            self.labels.extend(label.strip() for label in labels.tolist())
        self.lines.extend(range(first_line, first_line + len(block)))
        return True

    def take(self) -> tuple[torch.Tensor, list[str], array.array[int]]:
        """The rows read so far (the features as a rows × features tensor), and a fresh start."""
        values, labels, lines = self.values, self.labels, self.lines
        self.__post_init__()
        self.labels, self.lines = [], array.array("q")
        inputs = (
            torch.from_numpy(numpy.frombuffer(values, dtype=values.typecode)) if values else torch.zeros(0)
        )
        return inputs.reshape(len(lines), len(self.features)), labels, lines


ROWS_PER_BLOCK = 20_000  # rows the csv module reads between two takes, where numpy cannot


def _read_blocks(stream: Any, table: _Columns, line: int) -> Iterator[None]:
    """The rest of the file into `table`, a block of lines at a time (after `line`, the last line
    read), pausing after each block so that a reader may `take` what it holds."""
    delimiter = table.delimiter
    while block := stream.readlines(BLOCK_BYTES):
        if '"' in "".join(
            block
        ):  # quoted cells may hold delimiters or span lines: the csv module reads the rest
            rows = _non_blank(csv.reader(itertools.chain(block, stream), delimiter=delimiter), line)
            while chunk := list(itertools.islice(rows, ROWS_PER_BLOCK)):
                table.add_rows(iter(chunk))
                yield
            return
        if not table.add_block(block, line + 1):
            table.add_rows(_non_blank(csv.reader(block, delimiter=delimiter), line))
        line += len(block)
        yield


def _parse_rows(
    path: Path,
    stream: Any,
    delimiter: str,
    header: bool | None,
    columns: Callable[[list[str]], tuple[int, list[int]]],
) -> _Table:
    reader = csv.reader(stream, delimiter=delimiter)
    rows = _non_blank(reader)
    first, second = next(rows, None), next(rows, None)
    if first is None or second is None:
        raise ConfigError(f"path: {path} needs at least two rows")
    width = len(first[1])
    if header is None:  # a header row has a name where the next row has a number
        header = any(not _is_number(a) and _is_number(b) for a, b in zip(first[1], second[1], strict=False))
    names = [cell.strip() for cell in first[1]] if header else [str(index) for index in range(width)]
    target, features = columns(names)
    table = _Columns(path, delimiter, names, target, features)
    table.add_rows(iter([second] if header else [first, second]))
    for _ in _read_blocks(stream, table, reader.line_num):
        pass
    inputs, labels, lines = table.take()
    return _Table(names, target, features, inputs, labels, lines)
