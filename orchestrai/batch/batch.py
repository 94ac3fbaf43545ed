"""`run_batch`: one run of a pipeline per data row, rows at once through an executor, sharing one `Shared`.

The driver reads rows lazily, skips the rows a results file already holds (`resume`), fails rows it
cannot read or map without running them, appends every finished row to the results file at once,
tells the hooks (progress), and writes `summary.json` in the batch folder at the end, whatever ended it.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

from ..engine.runner import new_run_id, start_inputs_needed
from ..engine.shared import Shared
from ..observe.memory_log import iso, write_json_atomically
from ..project import Project
from .executor import Executor, LocalExecutor, RowTask
from .results import SUCCESS, ResultsFile, RowResult, finished_rows
from .rowrunner import RowRunner, failed_row
from .rows import check_data_file, count_rows, read_rows, row_inputs

FAILED_ROWS_LISTED = 100  # the summary lists this many failed rows; the results file has them all
# A run leaves reference cycles, and rows came faster than the collector's own thresholds freed them: a
# 10,000-row batch grew ~150 MB of garbage. A full collection every this many rows holds ~10 MB for
# ~40 µs a row (it skips the heap the running rows froze).
COLLECT_EVERY_ROWS = 500


@dataclass
class BatchOptions:
    pipeline: Path
    data: Path
    config: Path | None = None
    mapping: dict[str, str] = field(default_factory=dict)  # run input -> column (--map request=question)
    results: Path | None = None  # default: <data file's stem>.results.jsonl in the current folder
    concurrency: int = 4  # rows at once (the local executor's cap)
    resume: bool = False  # skip the rows the results file holds as completed
    dry_run: bool = False
    use_cache: bool = True
    budget_usd: float | None = None  # one budget for the whole batch
    max_concurrency: int | None = None  # steps at once within a row
    log_dir: Path | None = None  # default: config log_dir; rows' logs go to <log_dir>/batch-<id>/
    write_logs: bool = True  # False: no memory logs and no summary file (benchmarks, embedding)


@dataclass
class Tally:
    """Where a batch stands: rows seen so far and what they used (resumed rows included)."""

    total: int
    started_at: float = field(default_factory=time.monotonic)
    completed: int = 0
    failed: int = 0
    resumed: int = 0  # rows skipped because an earlier batch finished them
    budget_exceeded: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    cost_complete: bool = True

    @property
    def done(self) -> int:
        return self.completed + self.failed + self.resumed

    def add(self, result: RowResult, *, resumed: bool = False) -> None:
        if resumed:
            self.resumed += 1
        elif result.get("status") in SUCCESS:
            self.completed += 1
        else:
            self.failed += 1
            self.budget_exceeded += result.get("status") == "budget_exceeded"
        totals: dict[str, Any] = dict(result.get("totals") or {})
        self.input_tokens += totals.get("input_tokens") or 0
        self.output_tokens += totals.get("output_tokens") or 0
        cost = totals.get("cost_usd")
        if cost is None and result.get("run_id") and (totals.get("input_tokens") or totals.get("output_tokens")):
            self.cost_complete = False  # calls were made whose price nobody knows
        self.cost_usd += cost or 0.0


@dataclass
class BatchSummary:
    batch_id: str
    status: str  # completed (every row ran), stopped (a mistake every row would hit), interrupted
    pipeline: str
    data: str
    results: str
    batch_dir: str | None
    rows: int
    completed: int
    failed: int
    resumed: int
    budget_exceeded: int
    input_tokens: int
    output_tokens: int
    cost_usd: float | None
    duration_s: float
    started_at: str | None
    finished_at: str | None
    failed_rows: list[dict[str, Any]] = field(default_factory=list)  # {row, error}, the first FAILED_ROWS_LISTED
    message: str | None = None  # why the batch stopped

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


class BatchHook(Protocol):
    """What a progress display hears. Called in the driver's event loop; must not block."""

    def batch_started(self, tally: Tally, batch_id: str) -> None: ...

    def row_finished(self, result: RowResult, tally: Tally) -> None: ...

    def batch_finished(self, summary: BatchSummary) -> None: ...


async def run_batch(options: BatchOptions, *, executor: Executor | None = None, hooks: Sequence[BatchHook] = (),
                    providers: dict[str, Any] | None = None) -> BatchSummary:
    """Run the batch; a mistake in config, pipeline or data file raises before any row runs."""
    check_data_file(options.data)
    project = Project.open(options.config)
    graph = project.load(options.pipeline)
    total = count_rows(options.data)  # a broken CSV header raises here, before the results file is touched
    results_path = options.results or Path(f"{options.data.stem}.results.jsonl")
    results, earlier = ResultsFile.open(results_path, resume=options.resume)
    done = finished_rows(earlier) if options.resume else {}
    batch_id = next((r["batch"] for r in earlier if r.get("batch")), None) or new_run_id()
    batch_dir = (options.log_dir or project.config.log_dir) / f"batch-{batch_id}" if options.write_logs else None
    tally = Tally(total=total)
    for result in done.values():
        tally.add(result, resumed=True)
    shared = Shared.open(project.config, budget_usd=options.budget_usd, use_cache=options.use_cache,
                         dry_run=options.dry_run, providers=providers)
    runner = RowRunner(options.pipeline, options.config, batch_id, batch_dir, options.dry_run, options.use_cache,
                       options.budget_usd, options.max_concurrency).attach(project, graph, shared)
    drive = _Driver(options, batch_id, results, tally, hooks, start_inputs_needed(graph, project.registry), done)
    started, status = time.time(), "interrupted"
    for hook in hooks:
        hook.batch_started(tally, batch_id)
    try:
        status = await drive.run(executor or LocalExecutor(options.concurrency), runner)
    finally:
        results.close()
        await shared.aclose()
        summary = drive.summary(status, str(graph.pipeline.path), results_path, batch_dir, started)
        if batch_dir is not None:
            batch_dir.mkdir(parents=True, exist_ok=True)
            write_json_atomically(batch_dir / "summary.json", json.dumps(summary.as_json(), indent=1) + "\n")
        for hook in hooks:  # on Ctrl-C too: a live display must stop drawing
            hook.batch_finished(summary)
    return summary


class _Driver:
    """One batch's bookkeeping: which rows to run, and what happens when each finishes."""

    def __init__(self, options: BatchOptions, batch_id: str, results: ResultsFile, tally: Tally,
                 hooks: Sequence[BatchHook], needed: list[str], done: dict[int, RowResult]) -> None:
        self.options, self.batch_id, self.results, self.tally = options, batch_id, results, tally
        self.hooks, self.needed, self.done = hooks, needed, done
        self.lines: dict[int, int] = {}  # row number -> file line, for rows handed to the executor
        self.failed_rows: list[dict[str, Any]] = []
        self.message: str | None = None
        self.finished = 0  # rows finished in this process

    def tasks(self) -> Iterator[RowTask]:
        """The rows to run, read as the executor asks for them; a row that cannot be run fails here."""
        for row in read_rows(self.options.data):
            if row.number in self.done:
                continue
            inputs, problem = row_inputs(row, self.options.mapping, self.needed, self.options.data)
            if problem is not None:
                self.finish({**failed_row(row.number, problem), "line": row.line})
                continue
            self.lines[row.number] = row.line
            yield row.number, inputs

    async def run(self, executor: Executor, runner: RowRunner) -> str:
        rows = executor.run_rows(self.tasks(), runner)
        async with contextlib.aclosing(rows):
            async for result in rows:
                self.finish({**result, "line": self.lines.pop(result["row"], result.get("line", 0))})
                if result.get("stop_batch"):
                    self.message = result.get("error")
                    return "stopped"
        return "completed"

    def finish(self, result: RowResult) -> None:
        result = {"batch": self.batch_id, **result}
        self.results.append(result)
        self.tally.add(result)
        if result.get("status") not in SUCCESS and len(self.failed_rows) < FAILED_ROWS_LISTED:
            self.failed_rows.append({"row": result["row"], "error": result.get("error")})
        for hook in self.hooks:
            hook.row_finished(result, self.tally)
        self.finished += 1
        if self.finished % COLLECT_EVERY_ROWS == 0:
            gc.collect()

    def summary(self, status: str, pipeline: str, results: Path, batch_dir: Path | None,
                started: float) -> BatchSummary:
        tally = self.tally
        return BatchSummary(
            self.batch_id, status, pipeline, str(self.options.data), str(results),
            str(batch_dir) if batch_dir is not None else None, tally.total, tally.completed, tally.failed,
            tally.resumed, tally.budget_exceeded, tally.input_tokens, tally.output_tokens,
            round(tally.cost_usd, 6) if tally.cost_complete else None, round(time.time() - started, 3), iso(started),
            iso(time.time()), self.failed_rows, self.message)


def run_batch_sync(options: BatchOptions, **kwargs: Any) -> BatchSummary:
    """`run_batch` for callers without an event loop."""
    return asyncio.run(run_batch(options, **kwargs))
