"""An eval's tests: inline ones, or the rows of a JSONL/CSV file with columns mapped to run inputs.

A row that cannot be read (malformed line, missing mapped column) becomes a test that fails with one
line naming the file and line: the other rows still run.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .spec import AssertionSpec, EvalSpec


@dataclass
class EvalTest:
    name: str
    vars: dict[str, Any]  # run inputs
    row: dict[str, Any] = field(default_factory=dict)  # every column, for {{ column }} in assertions
    assertions: list[tuple[AssertionSpec, tuple[Any, ...]]] = field(default_factory=list)  # with their YAML loc
    error: str | None = None  # why this test cannot run


def read_rows(path: Path) -> list[tuple[int, dict[str, Any] | None, str | None]]:
    """(line, row, problem) per data row; a row is None when its line is unreadable (problem says why)."""
    if path.suffix.lower() == ".csv":
        return _csv_rows(path)
    rows: list[tuple[int, dict[str, Any] | None, str | None]] = []
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                value = json.loads(line)
            except ValueError as exc:
                rows.append((number, None, f"not valid JSON: {exc}"))
                continue
            if isinstance(value, dict):
                rows.append((number, value, None))
            else:
                rows.append((number, None, "a row must be a JSON object"))
    return rows


def _csv_rows(path: Path) -> list[tuple[int, dict[str, Any] | None, str | None]]:
    rows: list[tuple[int, dict[str, Any] | None, str | None]] = []
    with path.open(encoding="utf-8", newline="") as handle:
        reader = csv.reader(handle, strict=True)
        try:
            header = next(reader)
        except StopIteration:
            return rows
        while True:
            start = reader.line_num + 1
            try:
                cells = next(reader)
            except StopIteration:
                break
            except csv.Error as exc:
                rows.append((start, None, f"malformed CSV: {exc}"))
                continue
            if not any(cells):
                continue
            if len(cells) != len(header):
                rows.append((start, None, f"{len(cells)} cells, the header has {len(header)}"))
                continue
            rows.append((start, dict(zip(header, cells, strict=True)), None))
    return rows


def build_tests(spec: EvalSpec, data_path: Path | None, shown: str) -> list[EvalTest]:
    """The inline tests then the data file's rows, each with the eval's own assertions first."""
    common = [(a, ("assert", n)) for n, a in enumerate(spec.assert_)]
    tests = [EvalTest(test.name or f"test {n + 1}", dict(test.vars), dict(test.vars),
                      common + [(a, ("tests", n, "assert", k)) for k, a in enumerate(test.assert_)])
             for n, test in enumerate(spec.tests)]
    if data_path is not None:
        for line, row, problem in read_rows(data_path):
            name = str(row.get("name") or row.get("id") or f"line {line}") if row else f"line {line}"
            test = EvalTest(name, {}, row or {}, list(common))
            if row is None:
                test.error = f"{shown}:{line}: {problem}"
            else:
                missing = [column for column in spec.vars.values() if column not in row]
                if missing:
                    test.error = f"{shown}:{line}: the row has no column {missing[0]!r} (mapped by vars:)"
                else:
                    test.vars = mapped(row, spec.vars)
            tests.append(test)
    return unique_names(tests)


def mapped(row: dict[str, Any], mapping: dict[str, str]) -> dict[str, Any]:
    """Run inputs from a row: every column by its own name, and `input: column` renamed."""
    return {**row, **{name: row[column] for name, column in mapping.items()}}


def unique_names(tests: list[EvalTest]) -> list[EvalTest]:
    """Test names are keys of the reports: a repeated one gets ` (2)`, ` (3)`."""
    seen: dict[str, int] = {}
    for test in tests:
        count = seen.get(test.name, 0) + 1
        seen[test.name] = count
        if count > 1:
            test.name = f"{test.name} ({count})"
    return tests
