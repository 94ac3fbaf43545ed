"""Running one row: a `RowRunner` is the `(row number, inputs) -> RowResult` callable executors call.

It holds only plain settings (paths, switches), so it pickles: in the process that calls it first
it opens the project, loads the pipeline and opens one `Shared` (providers, rate limits, budget,
cache) that every later row in that process uses. The driver hands its own to a local runner
(`attach`), so the pipeline is validated once and the CLI's errors come before any row runs.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..api import Hook
from ..engine.options import RunOptions
from ..engine.redact import redact_data
from ..engine.runner import RunResult, run_pipeline
from ..engine.shared import Shared
from ..errors import InputError, OrchestraiError
from ..observe.memory_log import MemoryLog
from ..pipeline.graph import PipelineGraph
from ..project import Project
from .executor import SharedFactory
from .results import RowResult, RowTotals


@dataclass
class RowRunner:
    pipeline: Path
    config: Path | None = None
    batch_id: str = "batch"
    log_dir: Path | None = None  # each row's memory log goes here; None: no logs (benchmarks, embedding)
    dry_run: bool = False
    use_cache: bool = True
    budget_usd: float | None = None
    max_concurrency: int | None = None  # steps at once within a row (default: config max_concurrency)
    shared_factory: SharedFactory | None = None  # e.g. limits and budget owned by a Ray actor
    providers: dict[str, Any] = field(default_factory=dict)  # ready-made providers (tests, embedding); not pickled
    _project: Project | None = field(default=None, repr=False)
    _graph: PipelineGraph | None = field(default=None, repr=False)
    _shared: Shared | None = field(default=None, repr=False)
    _owns_shared: bool = field(default=False, repr=False)

    def __getstate__(self) -> dict[str, Any]:
        # What crosses to another process: settings only; that process opens its own project and Shared.
        return {**self.__dict__, "providers": {}, "_project": None, "_graph": None, "_shared": None,
                "_owns_shared": False}

    @property
    def key(self) -> str:
        return self.batch_id

    def driver_budget(self) -> float | None:
        return self.open()[2].budget.limit_usd  # --budget, else the config's

    def shipped(self, shared_factory: SharedFactory) -> RowRunner:
        project = self.open()[0]
        return dataclasses.replace(self, pipeline=self.pipeline.resolve(), config=project.config.path,
                                   log_dir=self.log_dir.resolve() if self.log_dir else None,
                                   shared_factory=shared_factory)

    def attach(self, project: Project, graph: PipelineGraph, shared: Shared) -> RowRunner:
        """Use resources the caller opened (and will close) instead of opening them on first use."""
        self._project, self._graph, self._shared = project, graph, shared
        return self

    def open(self) -> tuple[Project, PipelineGraph, Shared]:
        if self._project is None or self._graph is None:
            self._project = Project.open(self.config)
            self._graph = self._project.load(self.pipeline)
        if self._shared is None:
            self._shared = self.shared_factory(self._project.config) if self.shared_factory else Shared.open(
                self._project.config, budget_usd=self.budget_usd, use_cache=self.use_cache, dry_run=self.dry_run,
                providers=self.providers)
            self._owns_shared = True
        return self._project, self._graph, self._shared

    async def aclose(self) -> None:
        """Close what this runner opened itself (not what `attach` gave it)."""
        if self._shared is not None and self._owns_shared:
            await self._shared.aclose()
            self._shared, self._owns_shared = None, False

    async def __call__(self, number: int, inputs: dict[str, Any]) -> RowResult:
        project, graph, shared = self.open()
        run_id = f"{self.batch_id}-{number}"
        memory_log = MemoryLog(self.log_dir, fsync=False) if self.log_dir is not None else None
        hooks: list[Hook] = [memory_log] if memory_log is not None else []
        options = RunOptions(run_inputs=inputs, dry_run=self.dry_run, max_concurrency=self.max_concurrency,
                             run_id=run_id, budget_usd=self.budget_usd, use_cache=self.use_cache, shared=shared)
        started = time.monotonic()
        try:
            result = await run_pipeline(graph, project.config, project.registry, options, hooks)
        except OrchestraiError as exc:  # raised before any step ran: a missing key, input or price
            log = memory_log.path if memory_log is not None else None
            return failed_row(number, f"{exc.message}{f' ({exc.hint})' if exc.hint else ''}", run_id=run_id,
                              duration_s=time.monotonic() - started, log=str(log) if log else None,
                              stop_batch=exc.exit_code == 2 and not isinstance(exc, InputError))
        return row_result(number, result, memory_log.path if memory_log is not None else None)


def row_result(number: int, result: RunResult, log: Path | None) -> RowResult:
    totals = result.totals
    outcome: RowResult = {
        "row": number, "status": result.status, "run_id": result.run_id,
        "outputs": redact_data({r.output_name: r.output for r in result.records  # the results file is a log too
                                if r.id in result.final_step_ids and r.succeeded}, result.redact),
        "totals": {"input_tokens": totals.input_tokens, "output_tokens": totals.output_tokens,
                   "cost_usd": totals.cost_usd, "duration_s": totals.duration_s},
        "log": str(log) if log is not None else None, "error": None}
    if result.status not in ("completed", "partial"):
        outcome["error"] = result.message or next(
            (f"step {r.id} failed: {r.error.splitlines()[0]}" for r in result.records if r.status == "failed"
             and r.error), f"the run ended {result.status}")
    return outcome


def failed_row(number: int, error: str, *, run_id: str | None = None, duration_s: float = 0.0,
               log: str | None = None, stop_batch: bool = False) -> RowResult:
    totals: RowTotals = {"input_tokens": 0, "output_tokens": 0, "cost_usd": None, "duration_s": round(duration_s, 3)}
    result: RowResult = {"row": number, "status": "failed", "run_id": run_id, "outputs": {}, "totals": totals,
                         "log": log, "error": error}
    if stop_batch:
        result["stop_batch"] = True
    return result


def run_row_sync(runner: RowRunner, number: int, inputs: dict[str, Any]) -> RowResult:
    """One row in a fresh event loop (a worker process without one)."""
    async def once() -> RowResult:
        try:
            return await runner(number, inputs)
        finally:
            await runner.aclose()

    return asyncio.run(once())
