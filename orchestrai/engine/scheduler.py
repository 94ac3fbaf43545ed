"""The scheduler: a ready queue over the DAG. A step starts the moment its own inputs exist.

There is no layer-by-layer barrier: a slow step holds up only the steps that need its output.
A step's outcome is recorded at the end of its own task, so each finished step costs O(its
successors), not a scan of everything running. Ready steps start by priority (higher first), then
file order.
"""

from __future__ import annotations

import asyncio
import heapq
import time
import traceback
from collections.abc import Callable, Mapping
from functools import partial
from typing import Any

from ..api import FingerprintsSteps, Module, RunStatus, StepEnded, StepRecord, StepStarted
from ..errors import OrchestraiError
from ..pipeline.spec import Step
from .budget import BudgetExceeded
from .context import RunContext, StepContext
from .resume import Fingerprints, ResumeSource


class Scheduler:
    """Runs every step of one graph under a concurrency cap; call `execute` once."""

    def __init__(self, run: RunContext, *, max_concurrency: int, resume: ResumeSource | None = None) -> None:
        self.run = run
        self.graph = run.graph
        self.max_concurrency = max_concurrency
        self.resume = resume
        self.fingerprints = Fingerprints(run.registry)
        self.records: dict[str, StepRecord] = {
            step.id: StepRecord(step.id, step.module, step.output_name) for step in self.graph.pipeline.steps}
        self.outputs: dict[str, Any] = {}
        self.stopped_by_budget = False
        self._waiting = dict(self.graph.predecessor_count)
        self._ready: list[tuple[int, int, str]] = []  # heap of (-priority, file position, step id)
        self._running: dict[str, asyncio.Task[Any]] = {}
        self._finished = asyncio.Event()
        self._extra_of: dict[str, Callable[[Step, Mapping[str, Any]], Any] | None] = {}
        # Events nobody receives are not built (a frozen dataclass per step adds up on 10,000 steps).
        self._announce_starts = run.bus.wants(StepStarted)
        self._announce_ends = run.bus.wants(StepEnded)

    async def execute(self) -> RunStatus:
        """Run to the end; returns the run status."""
        for step_id, count in self._waiting.items():
            if count == 0:
                self._push_ready(step_id)
        self._fill()
        try:
            if self._running:
                await self._finished.wait()
        except asyncio.CancelledError:
            await self._interrupt()
            raise
        return self.status()

    def status(self) -> RunStatus:
        """completed, partial (only non-critical steps failed), failed, or budget_exceeded."""
        if self.stopped_by_budget:
            return "budget_exceeded"
        failed = [self.graph.steps[r.id] for r in self.records.values() if r.status == "failed"]
        if any(step.critical for step in failed):
            return "failed"
        return "partial" if failed else "completed"

    def _push_ready(self, step_id: str) -> None:
        step = self.graph.steps[step_id]
        heapq.heappush(self._ready, (-step.priority, step.index, step_id))

    def _fill(self) -> None:
        ready, running = self._ready, self._running
        while ready and len(running) < self.max_concurrency and not self.stopped_by_budget:
            _, _, step_id = heapq.heappop(ready)
            running[step_id] = asyncio.create_task(self._run_step(step_id), name=f"step:{step_id}")
        if self.stopped_by_budget and not running:
            self._skip_everything_left("not run: the run's budget was exhausted")
        if not running and (not ready or self.stopped_by_budget):
            self._finished.set()

    async def _run_step(self, step_id: str) -> None:
        """One step, start to end. Its outcome is recorded here, at the end of its own task, not in a
        done-callback: that would cost every step one more trip through the event loop."""
        step = self.graph.steps[step_id]
        record = self.records[step_id]
        record.status, record.started_at = "running", time.time()
        error: Exception | None = None
        try:
            outputs = self.outputs
            inputs = {name: outputs[name] for name in step.all_inputs if name in outputs}
            record.inputs = inputs
            module = self.run.registry.instance(step.module)
            record.fingerprint_source = partial(self._fingerprint, step, module)
            resume = self.resume
            verdict = resume.check(step_id, record.fingerprint or "", inputs) if resume is not None else None
            if resume is not None and verdict is not None and verdict.reusable:
                record.status = "resumed"
                record.details["resumed_from"] = resume.run_id
                output = verdict.output
            else:
                if verdict is not None:
                    record.details["rerun_because"] = verdict.reason
                if self._announce_starts:
                    self.run.bus.emit(StepStarted(step_id, step.module, record.started_at))
                ctx = StepContext(step, self.run, record)
                output = await module.run(ctx, inputs)
                if step.output_schema is not None:
                    ctx.check_output(output)
        except asyncio.CancelledError:
            self._running.pop(step_id, None)
            raise  # _interrupt records these
        except Exception as exc:  # noqa: BLE001 - a module's failure is the step's outcome, not the run's end
            error = exc
        self._running.pop(step_id, None)
        record.finished_at = time.time()
        if error is None:
            self._succeed(step_id, record, output)
        else:
            self._failed(step_id, record, error)
        self._fill()

    def _fingerprint(self, step: Step, module: Module) -> str:
        # isinstance against a runtime protocol costs microseconds: asked once per module, not per step.
        if step.module not in self._extra_of:
            self._extra_of[step.module] = module.fingerprint_extra if isinstance(module, FingerprintsSteps) else None
        extra = self._extra_of[step.module]
        return self.fingerprints.of(step, extra(step, self.run.run_inputs) if extra is not None else None)

    def _failed(self, step_id: str, record: StepRecord, error: Exception) -> None:
        if isinstance(error, BudgetExceeded) and self.run.budget.exhausted:
            self.stopped_by_budget = True
            record.status, record.error = "skipped", self.run.redact(str(error))
        else:
            record.status, record.error = "failed", self.run.redact(describe_error(error))
        self._ended(record)
        self._settle_dependants(step_id)

    def _succeed(self, step_id: str, record: StepRecord, output: Any) -> None:
        if record.status != "resumed":
            record.status = "cached" if record.calls and record.cache_hits == record.calls else "completed"
        record.output = output
        self.outputs[self.graph.steps[step_id].output_name] = output
        self._ended(record)
        for successor in self.graph.successors[step_id]:
            self._input_arrived(successor)

    def _ended(self, record: StepRecord) -> None:
        if self._announce_ends:
            self.run.bus.emit(StepEnded(record))

    def _input_arrived(self, step_id: str) -> None:
        self._waiting[step_id] -= 1
        if self._waiting[step_id] == 0 and self.records[step_id].status == "pending":
            self._push_ready(step_id)

    def _settle_dependants(self, failed_id: str) -> None:
        """After a step failed or was skipped: dependants that can do without its output go on; others are skipped."""
        missing = self.graph.steps[failed_id].output_name
        for successor in self.graph.successors[failed_id]:
            step, record = self.graph.steps[successor], self.records[successor]
            if record.status != "pending":
                continue
            if missing not in step.inputs:  # only an optional input: run without it
                self._input_arrived(successor)
                continue
            record.status = "skipped"
            record.error = f"not run: needs {missing!r} from step {failed_id!r}, which did not complete"
            self._ended(record)
            self._settle_dependants(successor)

    def _skip_everything_left(self, reason: str) -> None:
        self._ready.clear()
        for record in self.records.values():
            if record.status == "pending":
                record.status, record.error = "skipped", reason
                self._ended(record)

    async def _interrupt(self) -> None:
        """Ctrl-C: cancel what runs, record it as interrupted, and what never started as skipped."""
        running = list(self._running.values())
        for task in running:
            task.cancel()
        await asyncio.gather(*running, return_exceptions=True)
        now = time.time()
        for record in self.records.values():
            if record.status == "running":
                record.status, record.finished_at, record.error = "interrupted", now, "interrupted by the user"
                self._ended(record)
        self._skip_everything_left("not run: the run was interrupted")


def describe_error(error: BaseException) -> str:
    """One line for a user's mistake; type, message and traceback for a bug in a module."""
    if isinstance(error, OrchestraiError):
        return str(error)
    trace = "".join(traceback.format_exception(type(error), error, error.__traceback__, limit=-3))
    return f"{type(error).__name__}: {error}\n{trace}"
