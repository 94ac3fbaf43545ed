"""Find and summarize past runs in a log directory (for `orchestrai logs`)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..api import SUCCESS_STATUSES
from ..errors import InputError
from .memory_log import JOURNAL_SUFFIX, read_log


@dataclass(frozen=True)
class RunSummary:
    path: Path
    run_id: str
    pipeline: str
    status: str
    started_at: str
    steps: int
    steps_completed: int
    input_tokens: int
    output_tokens: int
    cost_usd: float | None  # None: no call had a price
    cached: int = 0
    resumed: int = 0
    cost_complete: bool = True  # False: some call had no price


def list_runs(log_dir: Path) -> list[RunSummary]:
    """Every run in `log_dir`, newest first; unreadable files are skipped."""
    if not log_dir.is_dir():
        return []
    paths = [p for p in log_dir.iterdir() if p.suffix == ".json" or p.name.endswith(JOURNAL_SUFFIX)]
    summaries = []
    for path in paths:
        try:
            summaries.append(summarize_run(path, read_log(path)))
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return sorted(summaries, key=lambda s: s.started_at or "", reverse=True)


def summarize_run(path: Path, log: dict[str, Any]) -> RunSummary:
    totals = log.get("totals") or {}
    # Only the pipeline's own steps count: fan-out items, iterations and sub-pipeline steps are part of one.
    steps = [s for s in log.get("steps") or [] if not s.get("parent")]
    status = log.get("status", "?") + (" (dry run)" if log.get("dry_run") else "")
    return RunSummary(path, log["run_id"], log.get("pipeline", "?"), status, log.get("started_at") or "",
                      len(steps), sum(1 for s in steps if s.get("status") in SUCCESS_STATUSES),
                      int(totals.get("input_tokens") or 0), int(totals.get("output_tokens") or 0),
                      None if totals.get("cost_usd") is None else float(totals["cost_usd"]),
                      sum(1 for s in steps if s.get("status") == "cached"),
                      sum(1 for s in steps if s.get("status") == "resumed"),
                      bool(totals.get("cost_complete", True)))


def find_run(log_dir: Path, ref: str) -> tuple[Path, dict[str, Any]]:
    """A run by log path, run id or unique run-id prefix."""
    candidate = Path(ref)
    if candidate.is_file():
        return candidate, read_log(candidate)
    matches = [s for s in list_runs(log_dir) if s.run_id.startswith(ref)]
    matches = [s for s in matches if s.run_id == ref] or matches  # a whole id wins (a batch's row 3 over row 30)
    if not matches:
        raise InputError(f"no run {ref!r} in {log_dir}", hint="`orchestrai logs` lists the runs")
    if len({m.run_id for m in matches}) > 1:
        raise InputError(f"{ref!r} matches several runs: {', '.join(m.run_id for m in matches[:5])}",
                              hint="give more characters of the run id")
    return matches[0].path, read_log(matches[0].path)


def dump(log: dict[str, Any]) -> str:
    return json.dumps(log, indent=2, ensure_ascii=False)
