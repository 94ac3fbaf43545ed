"""The scheduler: a ready queue over the DAG. A step starts the moment its own inputs exist.

There is no layer-by-layer barrier: a slow step holds up only the steps that need its output.
Completion is handled in task done-callbacks, so each finished step costs O(its successors),
not a scan of everything running.
"""

from __future__ import annotations

import asyncio
import heapq
import time
import traceback
from typing import Any

from ..errors import OrchestraiError
from .context import RunContext, StepContext
from .events import StepEnded, StepRecord, StepStarted


class Scheduler:
    """Runs every step of one graph under a concurrency cap; call `execute` once."""

    def __init__(self, run: RunContext, *, max_concurrency: int) -> None:
        self.run = run
        self.graph = run.graph
        self.max_concurrency = max_concurrency
        self.records: dict[str, StepRecord] = {
            step.id: StepRecord(step.id, step.module, step.output_name) for step in self.graph.pipeline.steps}
        self.outputs: dict[str, Any] = {}
        self._waiting = dict(self.graph.predecessor_count)
        self._ready: list[tuple[int, str]] = []  # heap of (file position, step id)
        self._running: dict[str, asyncio.Task[Any]] = {}
        self._finished = asyncio.Event()

    async def execute(self) -> str:
        """Run to the end; returns the run status (completed, failed or interrupted)."""
        for step_id, count in self._waiting.items():
            if count == 0:
                heapq.heappush(self._ready, (self.graph.steps[step_id].index, step_id))
        self._fill()
        try:
            if self._running:
                await self._finished.wait()
        except asyncio.CancelledError:
            await self._interrupt()
            raise
        return "failed" if any(r.status == "failed" for r in self.records.values()) else "completed"

    def _fill(self) -> None:
        while self._ready and len(self._running) < self.max_concurrency:
            _, step_id = heapq.heappop(self._ready)
            task = asyncio.create_task(self._run_step(step_id), name=f"step:{step_id}")
            self._running[step_id] = task
            task.add_done_callback(lambda t, sid=step_id: self._on_done(sid, t))
        if not self._running and not self._ready:
            self._finished.set()

    async def _run_step(self, step_id: str) -> Any:
        step = self.graph.steps[step_id]
        record = self.records[step_id]
        record.status, record.started_at = "running", time.time()
        inputs = {name: self.outputs[name] for name in step.inputs}
        record.inputs = inputs
        self.run.bus.emit(StepStarted(step_id, step.module, record.started_at))
        module = self.run.registry.instance(step.module)
        return await module.run(StepContext(step, self.run, record), inputs)

    def _on_done(self, step_id: str, task: asyncio.Task[Any]) -> None:
        self._running.pop(step_id, None)
        if task.cancelled():
            return  # _interrupt records these
        record = self.records[step_id]
        record.finished_at = time.time()
        error = task.exception()
        if error is None:
            record.status, record.output = "completed", task.result()
            self.outputs[self.graph.steps[step_id].output_name] = record.output
            self.run.bus.emit(StepEnded(record))
            for successor in self.graph.successors[step_id]:
                self._waiting[successor] -= 1
                if self._waiting[successor] == 0:
                    heapq.heappush(self._ready, (self.graph.steps[successor].index, successor))
        else:
            record.status, record.error = "failed", self.run.redact(describe_error(error))
            self.run.bus.emit(StepEnded(record))
            self._skip_dependants(step_id)
        self._fill()

    def _skip_dependants(self, failed_id: str) -> None:
        for dependant in sorted(self.graph.descendants(failed_id), key=lambda sid: self.graph.steps[sid].index):
            record = self.records[dependant]
            if record.status == "pending":
                record.status = "skipped"
                record.error = f"not run: depends on step {failed_id!r}, which failed"
                self._waiting[dependant] = -1  # never becomes ready
                self.run.bus.emit(StepEnded(record))

    async def _interrupt(self) -> None:
        """Ctrl-C: cancel what runs, record it as interrupted, and what never started as skipped."""
        running = list(self._running.items())
        for _, task in running:
            task.cancel()
        await asyncio.gather(*(task for _, task in running), return_exceptions=True)
        now = time.time()
        for record in self.records.values():
            if record.status == "running":
                record.status, record.finished_at, record.error = "interrupted", now, "interrupted by the user"
                self.run.bus.emit(StepEnded(record))
            elif record.status == "pending":
                record.status, record.error = "skipped", "not run: the run was interrupted"
                self.run.bus.emit(StepEnded(record))


def describe_error(error: BaseException) -> str:
    """One line for a user's mistake; type, message and traceback for a bug in a module."""
    if isinstance(error, OrchestraiError):
        return str(error)
    trace = "".join(traceback.format_exception(type(error), error, error.__traceback__, limit=-3))
    return f"{type(error).__name__}: {error}\n{trace}"
