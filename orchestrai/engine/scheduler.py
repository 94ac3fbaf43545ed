"""The scheduler: a ready queue over the DAG. A step starts the moment its own inputs exist.

There is no layer-by-layer barrier: a slow step holds up only the steps that need its output.
A step's outcome is recorded at the end of its own task, so each finished step costs O(its
successors), not a scan of everything running. Ready steps start by priority (higher first), then
file order. A `foreach` step's items join the same ready queue (never more of them than the step's
max_concurrency, so a 10,000-item fan-out is not 10,000 waiting tasks); loops and sub-pipelines run
child schedulers that share this one's cap on work in flight (`Slots`).
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
from ..errors import ModuleError, OrchestraiError
from ..pipeline.expressions import ExpressionFailed, describe_type
from ..pipeline.graph import PipelineGraph
from ..pipeline.spec import Step, ToolUse
from .budget import BudgetExceeded
from .context import RunContext, StepContext
from .fanout import Fanout, join_outcome
from .resume import Fingerprints, ResumeSource


class Slots:
    """The run's cap on steps in flight, shared by the top scheduler and its loops' and sub-pipelines'."""

    __slots__ = ("cap", "in_use", "blocked", "shared")

    def __init__(self, cap: int) -> None:
        self.cap, self.in_use = cap, 0
        self.blocked: dict[Scheduler, None] = {}  # schedulers with ready work and no free slot (an ordered set)
        self.shared = False  # a child scheduler exists: a freed slot may be another scheduler's to use

    def wake(self) -> None:
        while self.blocked and self.in_use < self.cap:
            scheduler = next(iter(self.blocked))
            del self.blocked[scheduler]
            scheduler._fill()


class Scheduler:
    """Runs every step of one graph under a concurrency cap; call `execute` once."""

    def __init__(self, run: RunContext, *, max_concurrency: int = 0, resume: ResumeSource | None = None,
                 graph: PipelineGraph | None = None, slots: Slots | None = None, prefix: str = "",
                 parent: str | None = None, outputs: dict[str, Any] | None = None,
                 scope: Mapping[str, Any] | None = None, fingerprints: Fingerprints | None = None,
                 extra_of: dict[str, Callable[[Step, Mapping[str, Any]], Any] | None] | None = None) -> None:
        self.run = run
        self.graph = graph or run.graph
        self.slots = slots or Slots(max_concurrency)
        self.resume = resume
        self.fingerprints = fingerprints or Fingerprints(run.registry)
        self.prefix = prefix  # record ids inside a loop iteration or sub-pipeline: "refine#2/", "research/"
        self.scope = scope  # a sub-pipeline's run inputs (None: the run's)
        self.records: dict[str, StepRecord] = {
            step.id: StepRecord(prefix + step.id, step.module, step.output_name, parent=parent)
            for step in self.graph.pipeline.steps}
        self.children: dict[str, list[StepRecord]] = {}  # record id -> its items', iterations' or sub-run's records
        self.outputs: dict[str, Any] = outputs if outputs is not None else {}
        self.stopped_by_budget = False
        self._waiting = dict(self.graph.predecessor_count)
        # Heap of (-priority, file position, step id) for a step, plus the item number for a fan-out
        # item (-1: a loop or sub-pipeline, which holds no slot).
        self._ready: list[tuple[Any, ...]] = []
        self._running: dict[str, asyncio.Task[Any]] = {}
        self._fanouts: dict[str, Fanout] = {}
        self._finished = asyncio.Event()
        # A module's fingerprint_extra, found once per module per run (shared with child schedulers: the
        # isinstance on a runtime protocol took 7.6 µs, once per loop iteration when each child had its own).
        self._extra_of: dict[str, Callable[[Step, Mapping[str, Any]], Any] | None] = \
            extra_of if extra_of is not None else {}
        # Events nobody receives are not built (a frozen dataclass per step adds up on 10,000 steps).
        self._announce_starts, self._announce_ends = run.announces  # asked once per run, not per child


    async def execute(self) -> RunStatus:
        """Run to the end; returns the run status."""
        for step_id, count in self._waiting.items():
            if count == 0:
                self._push_ready(step_id)
        self._fill()
        try:
            if self._running or self._ready:
                await self._finished.wait()
        except asyncio.CancelledError:
            await self._interrupt()
            raise
        return self.status()

    def status(self) -> RunStatus:
        """completed, partial (only non-critical steps failed), failed, or budget_exceeded."""
        if self.stopped_by_budget:
            return "budget_exceeded"
        failed = [self.graph.steps[step_id] for step_id, r in self.records.items() if r.status == "failed"]
        if any(step.critical for step in failed):
            return "failed"
        return "partial" if failed else "completed"

    def all_records(self) -> list[StepRecord]:
        """Every record, each step's items, iterations or sub-run right after it."""
        if not self.children:  # a pipeline without fan-outs, loops or sub-pipelines: no generator per record
            return list(self.records.values())
        found: list[StepRecord] = []
        todo = list(reversed(self.records.values()))
        while todo:
            record = todo.pop()
            found.append(record)
            todo += reversed(self.children.get(record.id, ()))
        return found

    def child(self, graph: PipelineGraph, prefix: str, parent: str, outputs: dict[str, Any],
              scope: Mapping[str, Any] | None = None) -> Scheduler:
        """A scheduler for a loop iteration or a sub-pipeline, sharing this one's slots, resume and fingerprints."""
        self.slots.shared = True
        return Scheduler(self.run, graph=graph, slots=self.slots, resume=self.resume, prefix=prefix, parent=parent,
                         outputs=outputs, scope=scope if scope is not None else self.scope,
                         fingerprints=self.fingerprints, extra_of=self._extra_of)

    def _push_ready(self, step_id: str) -> None:
        step = self.graph.steps[step_id]
        if step.control is not None:  # when / foreach / loop / sub-pipeline
            self._decide(step)
            return
        heapq.heappush(self._ready, (-step.priority, step.index, step_id))

    def _fill(self) -> None:
        ready, running, slots = self._ready, self._running, self.slots
        while ready and slots.in_use < slots.cap and not self.stopped_by_budget:
            entry = heapq.heappop(ready)
            step_id = entry[2]
            if len(entry) == 3:
                slots.in_use += 1
                running[step_id] = asyncio.create_task(self._run_step(step_id), name=f"step:{step_id}")
            elif entry[3] < 0:  # a loop or sub-pipeline: its own steps take the slots
                running[step_id] = asyncio.create_task(self._run_step(step_id, holds_slot=False),
                                                       name=f"step:{step_id}")
            else:
                key = f"{step_id}[{entry[3]}]"
                holds = not self._fanouts[step_id].composite
                slots.in_use += holds
                running[key] = asyncio.create_task(self._run_item(step_id, entry[3], key, holds), name=f"step:{key}")
        if ready and not self.stopped_by_budget:
            slots.blocked[self] = None
        if self.stopped_by_budget and not running:
            self._skip_everything_left("not run: the run's budget was exhausted")
        if not running and (not ready or self.stopped_by_budget):
            self._finished.set()

    def _release(self, holds_slot: bool) -> None:
        if holds_slot:
            self.slots.in_use -= 1
        self._fill()
        if self.slots.shared:
            self.slots.wake()

    async def _run_step(self, step_id: str, holds_slot: bool = True) -> None:
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
            if step.control is None:  # inline, not _produce: one coroutine layer fewer per step
                reused, ctx, work = self._begin(step, record, inputs)
                output = work if reused else await work
                if step.output_schema is not None and not reused:
                    ctx.check_output(output)
            else:
                output = await self._produce(step, record, inputs)
        except asyncio.CancelledError:
            self._running.pop(step_id, None)
            self.slots.in_use -= holds_slot
            raise  # _interrupt records these
        except Exception as exc:  # noqa: BLE001 - a module's failure is the step's outcome, not the run's end
            error = exc
        self._running.pop(step_id, None)
        record.finished_at = time.time()
        if error is None:
            self._succeed(step_id, record, output)
        else:
            self._failed(step_id, record, error)
        self._release(holds_slot)

    async def _produce(self, step: Step, record: StepRecord, inputs: dict[str, Any]) -> Any:
        """The step's output for these inputs: reused from the resumed run, or the module's (or a loop's,
        or a sub-pipeline's) answer."""
        control = step.control
        if control is not None and control.composite:
            from .composite import run_composite

            return await run_composite(self, step, record, inputs)
        reused, ctx, work = self._begin(step, record, inputs)
        if reused:
            return work
        output = await work
        if step.output_schema is not None:
            ctx.check_output(output)
        return output

    def _begin(self, step: Step, record: StepRecord, inputs: dict[str, Any]) -> tuple[bool, StepContext, Any]:
        """(True, ctx, the earlier run's output) when resume reuses it, else (False, ctx, the module's coroutine)."""
        module = self.run.registry.instance(step.module)
        record.fingerprint_source = partial(self._fingerprint, step, module)
        ctx = StepContext(step, self.run, record, self.scope,
                          partial(self._spawn, step, record) if step.tools is not None else None)
        resume = self.resume
        verdict = resume.check(record.id, record.fingerprint or "", inputs) if resume is not None else None
        if resume is not None and verdict is not None and verdict.reusable:
            record.status = "resumed"
            record.details["resumed_from"] = resume.run_id
            return True, ctx, verdict.output
        if verdict is not None:
            record.details["rerun_because"] = verdict.reason
        if self._announce_starts:
            self.run.bus.emit(StepStarted(record.id, step.module, record.started_at or time.time()))
        return False, ctx, module.run(ctx, inputs)

    async def _spawn(self, step: Step, record: StepRecord, use: ToolUse, arguments: dict[str, Any],
                     number: int) -> Any:
        """A module or sub-pipeline the step's model called as a tool, run nested under the step's record."""
        from .composite import run_spawned

        return await run_spawned(self, step, record, use, arguments, number)

    def _fingerprint(self, step: Step, module: Module) -> str:
        # isinstance against a runtime protocol costs microseconds: asked once per module, not per step.
        if step.module not in self._extra_of:
            self._extra_of[step.module] = module.fingerprint_extra if isinstance(module, FingerprintsSteps) else None
        extra = self._extra_of[step.module]
        run_inputs = self.scope if self.scope is not None else self.run.run_inputs
        return self.fingerprints.of(step, extra(step, run_inputs) if extra is not None else None)

    def _failed(self, step_id: str, record: StepRecord, error: Exception) -> None:
        if isinstance(error, BudgetExceeded) and self.run.budget.exhausted:
            self.stopped_by_budget = True
            record.status, record.error = "skipped", self.run.redact(str(error))
        else:
            record.status, record.error = "failed", self.run.redact(describe_error(error))
        self._ended(record)
        self._settle_dependants(step_id)

    def _succeed(self, step_id: str, record: StepRecord, output: Any) -> None:
        if record.status == "running":
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
            if not step.requires(missing):  # only an optional input: run without it
                self._input_arrived(successor)
                continue
            record.status = "skipped"
            record.error = f"not run: needs {missing!r} from step {failed_id!r}, which did not complete"
            self._ended(record)
            self._settle_dependants(successor)

    # when and foreach: decided when the step's inputs are all there, without a task of their own.

    def _decide(self, step: Step) -> None:
        control, record = step.control, self.records[step.id]
        assert control is not None
        if control.when is not None:
            try:
                go = control.when.evaluate(self.outputs)
            except ExpressionFailed as exc:
                record.started_at = record.finished_at = time.time()
                self._failed(step.id, record, ModuleError(f"{step.location}: step {step.id!r}: when {exc}"))
                return
            if not go:
                record.status, record.error = "skipped", "condition false"
                record.started_at = record.finished_at = time.time()
                record.details["when"] = control.when.source
                self._ended(record)
                self._settle_dependants(step.id)
                return
        if control.foreach is not None:
            self._begin_fanout(step, record)
        else:
            heapq.heappush(self._ready, (-step.priority, step.index, step.id, *((-1,) if control.composite else ())))

    def _begin_fanout(self, step: Step, record: StepRecord) -> None:
        control = step.control
        assert control is not None and control.foreach is not None
        record.status, record.started_at = "running", time.time()
        record.inputs = {name: self.outputs[name] for name in step.all_inputs if name in self.outputs}
        try:
            items = control.foreach.resolve(self.outputs)
            if not isinstance(items, list):
                raise ExpressionFailed(f"{control.foreach} is {describe_type(items)}, not a list")
        except ExpressionFailed as exc:
            record.finished_at = time.time()
            self._failed(step.id, record, ModuleError(f"{step.location}: step {step.id!r}: foreach {exc}"))
            return
        fanout = Fanout(step, record, items)
        record.details["items"] = len(items)
        self.run.announce_fanout(record.id, len(items))
        if not items:
            record.finished_at = time.time()
            self._succeed(step.id, record, [])
            return
        self._fanouts[step.id] = fanout
        self.children[record.id] = fanout.records
        for _ in range(min(fanout.cap, len(items))):
            self._push_item(fanout)

    def _push_item(self, fanout: Fanout) -> None:
        step = fanout.step
        heapq.heappush(self._ready, (-step.priority, step.index, step.id, fanout.next))
        fanout.next += 1

    async def _run_item(self, step_id: str, number: int, key: str, holds_slot: bool) -> None:
        fanout = self._fanouts[step_id]
        record = fanout.start(number)
        error: Exception | None = None
        output = None
        try:
            output = await self._produce(fanout.step, record, record.inputs)
        except asyncio.CancelledError:
            self._running.pop(key, None)
            self.slots.in_use -= holds_slot
            raise
        except Exception as exc:  # noqa: BLE001 - an item's failure is recorded; the join decides the step
            error = exc
        self._running.pop(key, None)
        record.finished_at = time.time()
        self._item_done(fanout, number, record, output, error)
        self._release(holds_slot)

    def _item_done(self, fanout: Fanout, number: int, record: StepRecord, output: Any,
                   error: Exception | None) -> None:
        if error is None:
            fanout.succeeded(number, output)
        elif isinstance(error, BudgetExceeded) and self.run.budget.exhausted:
            self.stopped_by_budget = True
            record.status, record.error = "skipped", self.run.redact(str(error))
        else:
            record.status, record.error = "failed", self.run.redact(describe_error(error))
        fanout.done += 1
        self._ended(record)
        if fanout.next < len(fanout.items) and not self.stopped_by_budget:
            self._push_item(fanout)
        elif fanout.done == fanout.next:
            self._finish_fanout(fanout)

    def _finish_fanout(self, fanout: Fanout) -> None:
        step, record = fanout.step, fanout.record
        del self._fanouts[step.id]
        record.finished_at = time.time()
        failure = join_outcome(fanout)
        record.details.update(fanout.summary())
        if fanout.done < len(fanout.items):  # the budget stopped it
            record.status, record.error = "skipped", "not run: the run's budget was exhausted"
            self._ended(record)
            self._settle_dependants(step.id)
        elif failure is not None:
            self._failed(step.id, record, ModuleError(failure))
        else:
            if fanout.records and all(item.status == "resumed" for item in fanout.records):
                record.status = "resumed"
            self._succeed(step.id, record, fanout.output())

    def _skip_everything_left(self, reason: str) -> None:
        self._ready.clear()
        for fanout in list(self._fanouts.values()):
            self._finish_fanout(fanout)
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
        self._fanouts.clear()
        for record in self.all_records():
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
