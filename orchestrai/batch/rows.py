"""A batch's rows: JSONL or CSV read one row at a time, each with its file line, and mapped to run inputs.

A malformed line is not an exception: it becomes a row carrying its problem (named `file:line`), so the
batch records that row as failed and goes on with the others.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import InputError

FORMATS = (".jsonl", ".csv")


@dataclass(frozen=True)
class Row:
    """Data row `number` (1-based, header and blank lines not counted) from `line` of the file."""

    number: int
    line: int
    fields: dict[str, Any] = field(default_factory=dict)
    problem: str | None = None  # set when the line could not be read: `file:line: what is wrong`


def check_data_file(path: Path) -> None:
    """Usage errors (exit 2) before anything runs: a missing, unreadable or unknown kind of file."""
    if path.suffix.lower() not in FORMATS:
        raise InputError(f"--data {path}: unknown format {path.suffix or '(no extension)'!r}",
                         hint="give a .jsonl file (one JSON object a line) or a .csv file with a header line")
    if not path.is_file():
        raise InputError(f"--data {path}: no such file", hint="check the path of the data file")
    try:
        with path.open("rb"):
            pass
    except OSError as exc:
        raise InputError(f"--data {path}: cannot read it: {exc.strerror}", hint="check the file's permissions") \
            from None


def read_rows(path: Path) -> Iterator[Row]:
    """Every row of a .jsonl or .csv file, in file order, read lazily (a million rows are not held at once)."""
    check_data_file(path)
    return _jsonl_rows(path) if path.suffix.lower() == ".jsonl" else _csv_rows(path)


def count_rows(path: Path) -> int:
    """How many rows `read_rows` yields (for the progress bar's total and ETA)."""
    return sum(1 for _ in read_rows(path))


def _jsonl_rows(path: Path) -> Iterator[Row]:
    number = 0
    with path.open("rb") as handle:
        for line_no, raw in enumerate(handle, start=1):
            if not raw.strip():
                continue  # a blank line is not a row (a trailing newline, a gap)
            number += 1
            where = f"{path}:{line_no}"
            try:
                value = json.loads(raw)
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                reason = exc.msg if isinstance(exc, json.JSONDecodeError) else "not UTF-8 text"
                yield Row(number, line_no, problem=f"{where}: not valid JSON ({reason})")
                continue
            if not isinstance(value, dict):
                yield Row(number, line_no, problem=f"{where}: a row must be a JSON object, not {type(value).__name__}")
                continue
            yield Row(number, line_no, value)


def _csv_rows(path: Path) -> Iterator[Row]:
    with path.open(encoding="utf-8", newline="", errors="strict") as handle:
        reader = csv.reader(handle, strict=True)
        header: list[str] | None = None
        number = 0
        while True:
            start = reader.line_num + 1
            try:
                cells = next(reader)
            except StopIteration:
                return
            except (csv.Error, UnicodeDecodeError) as exc:
                if header is None:
                    raise InputError(f"{path}:{start}: cannot read the header line ({exc})",
                                     hint="the first line must name the columns, comma-separated") from None
                number += 1
                yield Row(number, start, problem=f"{path}:{start}: malformed CSV ({exc})")
                continue
            if not any(cell.strip() for cell in cells):
                continue
            if header is None:
                header = [name.strip() for name in cells]
                continue
            number += 1
            if len(cells) != len(header):
                yield Row(number, start, problem=f"{path}:{start}: {len(cells)} values for {len(header)} columns "
                                                 f"({', '.join(header)})")
                continue
            yield Row(number, start, dict(zip(header, cells, strict=True)))


def parse_map(pairs: list[str]) -> dict[str, str]:
    """`--map INPUT=COLUMN` pairs as {run input: column}."""
    mapping: dict[str, str] = {}
    for pair in pairs:
        name, sep, column = pair.partition("=")
        if not sep or not name.strip() or not column.strip():
            raise InputError(f"--map {pair!r}: expected INPUT=COLUMN", hint="e.g. --map request=question")
        mapping[name.strip()] = column.strip()
    return mapping


def row_inputs(row: Row, mapping: dict[str, str], needed: list[str], source: Path) -> tuple[dict[str, Any], str | None]:
    """(run inputs, problem): the row's fields, mapped columns renamed to their run inputs.

    The problem names the file line, the column and the fix; every field not mapped keeps its name.
    """
    if row.problem is not None:
        return {}, row.problem
    where = f"{source}:{row.line}"
    inputs = dict(row.fields)
    for name, column in mapping.items():
        if column not in row.fields:
            return {}, (f"{where}: row {row.number} has no column {column!r} (--map {name}={column}); "
                        f"its columns: {', '.join(row.fields) or 'none'}")
        inputs[name] = row.fields[column]
    missing = [name for name in needed if name not in inputs]
    if missing:
        return {}, (f"{where}: row {row.number} has no column {missing[0]!r}, a run input of the pipeline; "
                    f"map one of its columns ({', '.join(row.fields) or 'none'}) with --map {missing[0]}=COLUMN")
    return inputs, None
