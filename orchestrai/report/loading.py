"""Reading a stored run for a report, tolerantly: a log cut short, an older log, a run still journaling.

`read_log` (observe/memory_log.py) reads a finished log or rebuilds one from a journal. A report must
also render a log whose JSON ends early (a full disk, a copy cut short): the final log writes its
run fields first and then one step per line, so everything before the cut is salvaged line by line,
and what is missing is said in `problems`.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import InputError
from ..observe.memory_log import JOURNAL_SUFFIX, read_log, totals_of
from ..observe.runs import find_run

_STEPS_START = '\n "steps": [\n'


@dataclass
class LoadedLog:
    """A run's log as a dict, where it came from, and what a reader should know is missing."""

    path: Path
    log: dict[str, Any]
    problems: list[str] = field(default_factory=list)


def locate(log_dir: Path, ref: str) -> Path:
    """The log file of run `ref` (a path, a run id or its start), readable or not."""
    candidate = Path(ref)
    if candidate.is_file():
        return candidate
    try:
        return find_run(log_dir, ref)[0]
    except InputError:
        # find_run skips files it cannot read (a log cut short): find those by their name, `...-<run id>.json`.
        named = sorted(p for p in (log_dir.iterdir() if log_dir.is_dir() else [])
                       if _run_id_of(p.name).startswith(ref))
        if len(named) == 1:
            return named[0]
        if named:
            raise InputError(f"{ref!r} matches several log files in {log_dir}: "
                             f"{', '.join(p.name for p in named[:3])}", hint="give the log file's path") from None
        raise


def _run_id_of(name: str) -> str:
    stem = name[: -len(JOURNAL_SUFFIX)] if name.endswith(JOURNAL_SUFFIX) else name.removesuffix(".json")
    return stem.rsplit("-", 1)[-1] if stem != name else ""


def load(path: Path) -> LoadedLog:
    """The log at `path` with its problems; InputError (one line) when nothing in it can be read."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror or exc}") from None
    if path.name.endswith(JOURNAL_SUFFIX):
        loaded = LoadedLog(path, read_log(path), ["the run has not finished (only its journal exists): it is "
                                                  "still running or was interrupted; unfinished steps are shown "
                                                  "as interrupted"])
        loaded.log["status"] = "running/interrupted"
    else:
        try:
            log = json.loads(text)
        except json.JSONDecodeError as exc:
            loaded = _salvage(path, text, exc)
        else:
            if not isinstance(log, dict) or not ("steps" in log or "run_id" in log):
                raise InputError(f"{path}: not a memory log (no run_id, no steps)",
                                 hint="`orchestrai logs` lists the runs")
            loaded = LoadedLog(path, log)
    _check_fields(loaded)
    return loaded


def _salvage(path: Path, text: str, error: json.JSONDecodeError) -> LoadedLog:
    """What parses of a log whose JSON is cut short: the run's fields, then each whole step line."""
    head, found, rest = text.partition(_STEPS_START)
    header: dict[str, Any] = {}
    if found:
        try:
            header = json.loads(head.rstrip().rstrip(",") + "}")
        except json.JSONDecodeError:
            header = {}
    if not header:
        header = _fields_by_line(head)
    steps = []
    for line in rest.splitlines():
        try:
            step = json.loads(line.rstrip().rstrip(","))
        except json.JSONDecodeError:
            continue
        if isinstance(step, dict) and "id" in step:
            steps.append(step)
    if not header and not steps:
        raise InputError(f"{path}:{error.lineno}: not a memory log (its JSON is unreadable: {error.msg})",
                         hint="`orchestrai logs` lists the runs")
    problems = [f"the log is cut short ({path.name}:{error.lineno}: {error.msg}): {len(steps)} steps could be "
                "read; later steps, the run's status and totals may be missing"]
    header.setdefault("status", "unknown (log cut short)")
    return LoadedLog(path, {**header, "steps": steps}, problems)


def _fields_by_line(head: str) -> dict[str, Any]:
    """The run's simple fields (`"run_id": "..."`) when the header itself is cut short."""
    fields: dict[str, Any] = {}
    for match in re.finditer(r'^ "(\w+)": ("[^"\n]*"|null|true|false|-?[\d.]+),?$', head, re.MULTILINE):
        fields[match.group(1)] = json.loads(match.group(2))
    return fields


def _check_fields(loaded: LoadedLog) -> None:
    """Say what an older or partial log lacks, and fill it in so the rest renders."""
    log, problems = loaded.log, loaded.problems
    steps = [s for s in log.get("steps") or [] if isinstance(s, dict) and "id" in s]
    for step in steps:
        step.setdefault("status", "unknown")
        step.setdefault("usage", {"input_tokens": 0, "output_tokens": 0})
        step.setdefault("cost_usd", None)
    log["steps"] = steps
    if "edges" not in log:
        problems.append("this log has no graph edges (written by an older orchestrai): the DAG shows steps "
                        "without edges")
    if steps and all("attempts" not in s for s in steps):
        problems.append("this log has no attempts per step (written by an older orchestrai): the timeline "
                        "shows each step as one bar, without retries or waits")
    if not isinstance(log.get("totals"), dict):
        problems.append("this log has no totals: they are summed from the steps it holds")
        log["totals"] = totals_of(steps)
    log.setdefault("run_id", _run_id_of(loaded.path.name) or "?")
    log.setdefault("pipeline", "?")
