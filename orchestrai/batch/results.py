"""The results file: one JSON line per finished row, each written to the OS at once.

A row's line goes out in one `os.write` loop on an O_APPEND descriptor (as the memory log's journal
does), so once a row is reported finished its line survives SIGKILL. A kill during a write can
leave a partial last line: `read_results` ignores it and `ResultsFile.open(resume=True)` cuts it
off, so the file stays valid JSONL and the row runs again.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, TypedDict

from ..errors import InputError
from ..observe.memory_log import to_json

SUCCESS = ("completed", "partial")  # a row with one of these is never run again by --resume


class RowTotals(TypedDict):
    input_tokens: int
    output_tokens: int
    cost_usd: float | None
    duration_s: float


class RowResult(TypedDict, total=False):
    """One line of the results file (plain JSON types, so it can come back from another process)."""

    batch: str
    row: int  # the data row's number, 1-based
    line: int  # its line in the data file
    status: str  # a RunStatus, or "failed" for a row that could not be read or mapped
    run_id: str | None
    outputs: dict[str, Any]  # the final steps' outputs by output_name
    totals: RowTotals
    log: str | None  # the row's memory log
    error: str | None  # one line: why the row failed
    stop_batch: bool  # a mistake every row would hit (config, pipeline, keys): the batch stops
    worker: str  # on Ray: which worker process ran the row ("<node id prefix>:<pid>")
    outcome: Any  # an eval's test run (evals.runner.RunOutcome): evals go through the same executors


def read_results(path: Path) -> tuple[list[RowResult], int]:
    """(every complete line's result, the byte length of the complete lines); a partial last line is ignored."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return [], 0
    except OSError as exc:
        raise InputError(f"cannot read the results file {path}: {exc.strerror}", hint="check the path") from None
    end = data.rfind(b"\n") + 1  # everything after the last newline is a line cut short
    results: list[RowResult] = []
    for line_no, raw in enumerate(data[:end].splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            entry = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise InputError(f"{path}:{line_no}: not a results line (invalid JSON)",
                             hint="give --resume the file an earlier batch wrote, or another -o") from None
        if isinstance(entry, dict) and isinstance(entry.get("row"), int):
            results.append(entry)  # type: ignore[arg-type]
    return results, end


def finished_rows(results: list[RowResult]) -> dict[int, RowResult]:
    """The last result of each row that succeeded (a failed row is run again on resume)."""
    done: dict[int, RowResult] = {}
    for result in results:
        if result.get("status") in SUCCESS:
            done[result["row"]] = result
    return done


class ResultsFile:
    """Appends results, one line per row, straight to the OS."""

    def __init__(self, path: Path, descriptor: int) -> None:
        self.path = path
        self._fd: int | None = descriptor

    @classmethod
    def open(cls, path: Path, *, resume: bool) -> tuple[ResultsFile, list[RowResult]]:
        """The file ready to append, and (with `resume`) the results it already holds.

        Without `resume` an existing file is replaced: its rows would otherwise mix with this batch's.
        """
        earlier: list[RowResult] = []
        path.parent.mkdir(parents=True, exist_ok=True)
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT
        if resume:
            earlier, end = read_results(path)
            if path.exists() and path.stat().st_size > end:
                os.truncate(path, end)  # drop the line a kill cut short, so appends start on a fresh line
        else:
            flags |= os.O_TRUNC
        try:
            descriptor = os.open(path, flags, 0o666)
        except OSError as exc:
            raise InputError(f"cannot write the results file {path}: {exc.strerror}",
                             hint="choose another file with -o") from None
        return cls(path, descriptor), earlier

    def append(self, result: RowResult) -> None:
        if self._fd is None:
            raise ValueError("the results file is closed")
        data = memoryview((to_json(result) + "\n").encode())
        while data:
            data = data[os.write(self._fd, data):]

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
