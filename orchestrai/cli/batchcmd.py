"""`orchestrai batch`: parse the options, run `run_batch` with a progress display, report and pick the exit code."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console
from rich.live import Live
from rich.markup import escape
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from ..batch import BatchHook, BatchOptions, BatchSummary, LocalExecutor, RowResult, Tally, run_batch
from ..batch.executor import Executor
from ..batch.rows import check_data_file, parse_map
from ..errors import InputError
from .render import stderr_console

PLAIN_EVERY_S = 10.0  # the plain view prints a progress line at each twentieth, or after this long


@dataclass(kw_only=True)
class BatchRequest:
    pipeline: Path
    data: Path
    config: Path | None = None
    maps: list[str] = field(default_factory=list)
    output: Path | None = None
    concurrency: int = 4
    resume: bool = False
    allow_failures: bool = False
    budget: float | None = None
    dry_run: bool = False
    no_cache: bool = False
    log_dir: Path | None = None
    quiet: bool = False
    as_json: bool = False
    executor: str = "local"  # or "ray"
    ray_address: str | None = None  # None with ray: a local Ray instance on 127.0.0.1


def batch_command(request: BatchRequest) -> int:
    """Run a batch as the CLI does; returns the exit code."""
    from .validatecmd import skip_pydantic_plugin_scan

    skip_pydantic_plugin_scan()
    check_data_file(request.data)  # before the project opens: the plainest mistake first
    executor = make_executor(request.executor, request.ray_address, request.concurrency)
    options = BatchOptions(request.pipeline, request.data, config=request.config, mapping=parse_map(request.maps),
                           results=request.output, concurrency=request.concurrency, resume=request.resume,
                           dry_run=request.dry_run, use_cache=not request.no_cache, budget_usd=request.budget,
                           log_dir=request.log_dir)
    console = stderr_console()
    hooks: list[BatchHook] = [] if request.as_json else [PlainBatchProgress(console, quiet=True)] if request.quiet \
        else [LiveBatchProgress(console) if console.is_terminal else PlainBatchProgress(console)]
    try:
        summary = asyncio.run(run_batch(options, executor=executor, hooks=hooks))
    except KeyboardInterrupt:
        console.print("[magenta]interrupted[/]; finished rows are in the results file (run again with --resume)",
                      highlight=False)
        return 130
    if request.as_json:
        sys.stdout.write(json.dumps(summary.as_json(), indent=2, ensure_ascii=False) + "\n")
    return exit_code(summary, request.allow_failures, console)


def make_executor(name: str, ray_address: str | None, concurrency: int) -> Executor:
    """The local executor, or Ray's (its absence named with the extra that installs it); `batch` and `eval`."""
    if name == "local":
        if ray_address:
            raise InputError("--ray-address needs --executor ray", hint="add --executor ray")
        return LocalExecutor(concurrency)
    if name != "ray":
        raise InputError(f"--executor {name!r} is not an executor", hint="use local or ray")
    from ..cluster.connect import require_ray

    require_ray()
    from ..cluster.executor import RayExecutor

    return RayExecutor(ray_address)


def exit_code(summary: BatchSummary, allow_failures: bool, console: Console) -> int:
    """2: a mistake every row hit (the batch stopped); 3: the budget stopped rows; 1: rows failed; 0: all ran."""
    if summary.status == "stopped":
        console.print(f"[red]error:[/] {escape(summary.message or 'the batch stopped')}", highlight=False)
        return 2
    if summary.status == "interrupted":
        return 130
    if summary.failed and not allow_failures:
        return 3 if summary.budget_exceeded else 1
    return 0


def tally_text(tally: Tally) -> str:
    cost = f"${tally.cost_usd:.4f}" if tally.cost_complete else f"≥ ${tally.cost_usd:.4f} (some prices unknown)"
    failed = f" · {tally.failed:,} failed" if tally.failed else ""
    return f"{tally.done:,}/{tally.total:,} rows{failed} · {tally.input_tokens + tally.output_tokens:,} tokens · {cost}"


def eta_text(tally: Tally, now: float) -> str:
    ran = tally.completed + tally.failed  # resumed rows took no time in this process
    left = tally.total - tally.done
    if not ran or not left:
        return "--:--" if left else "0:00"
    seconds = int((now - tally.started_at) / ran * left)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}" if seconds >= 3600 \
        else f"{seconds // 60}:{seconds % 60:02d}"


def row_failed_line(result: RowResult) -> str:
    error = (result.get("error") or result.get("status") or "failed").splitlines()[0]
    return f"[red]row {result['row']} {escape(str(result.get('status')))}:[/] {escape(error)}"


def end_line(summary: BatchSummary) -> str:
    resumed = f", {summary.resumed:,} from an earlier run" if summary.resumed else ""
    logs = f"; logs: {summary.batch_dir}" if summary.batch_dir else ""
    return (f"batch {summary.batch_id} {summary.status}: {summary.completed:,} completed, {summary.failed:,} failed"
            f"{resumed} of {summary.rows:,} rows in {summary.duration_s:.1f}s; results: {escape(summary.results)}"
            f"{escape(logs)}")


class LiveBatchProgress:
    """A terminal bar over rows: done/total, ETA, failed, tokens and cost; a line per failed row above it."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.tally: Tally | None = None
        self._live: Live | None = None

    def batch_started(self, tally: Tally, batch_id: str) -> None:
        self.tally = tally
        self.console.print(f"batch {batch_id}: {tally.total:,} rows"
                           + (f", {tally.resumed:,} already done" if tally.resumed else ""), highlight=False)
        self._live = Live(get_renderable=self._render, console=self.console, refresh_per_second=8, transient=True)
        self._live.start()

    def row_finished(self, result: RowResult, tally: Tally) -> None:
        if result.get("status") not in ("completed", "partial"):
            self.console.print(row_failed_line(result), highlight=False)

    def batch_finished(self, summary: BatchSummary) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None
        self.console.print(end_line(summary), highlight=False)

    def _render(self) -> Table:
        grid = Table.grid()
        if self.tally is not None:
            tally = self.tally
            grid.add_row(ProgressBar(total=max(tally.total, 1), completed=tally.done, width=30),
                         Text(f" {tally_text(tally)} · ETA {eta_text(tally, time.monotonic())}"))
        return grid


class PlainBatchProgress:
    """For CI logs and pipes: a line per failed row, a progress line at each twentieth (or every 10 s), an end line."""

    def __init__(self, console: Console, *, quiet: bool = False) -> None:
        self.console = console
        self.quiet = quiet  # --quiet: only the failed rows' lines
        self._last_line_at = time.monotonic()
        self._step = 1

    def batch_started(self, tally: Tally, batch_id: str) -> None:
        self._step = max(1, tally.total // 20)
        if not self.quiet:
            self.console.print(f"batch {batch_id}: {tally.total:,} rows"
                               + (f", {tally.resumed:,} already done" if tally.resumed else ""), highlight=False)

    def row_finished(self, result: RowResult, tally: Tally) -> None:
        if result.get("status") not in ("completed", "partial"):
            self.console.print(row_failed_line(result), highlight=False)
        if self.quiet:
            return
        now = time.monotonic()
        if tally.done % self._step == 0 or now - self._last_line_at >= PLAIN_EVERY_S or tally.done == tally.total:
            self._last_line_at = now
            self.console.print(f"{tally_text(tally)} · ETA {eta_text(tally, now)}", highlight=False)

    def batch_finished(self, summary: BatchSummary) -> None:
        if not self.quiet:
            self.console.print(end_line(summary), highlight=False)



