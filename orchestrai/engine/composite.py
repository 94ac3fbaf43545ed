"""Steps that run other steps: a loop's iterations and a sub-pipeline, each on a child scheduler.

A child scheduler shares the run (providers, budget, rate limits, cache, bus), the cap on work in
flight, the resume source and the fingerprints of its parent; its records carry ids under the
step's (`refine#2/draft`, `research/plan`) and are kept with the step's record.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from ..api import SUCCESS_STATUSES, RunStatus, StepRecord
from ..errors import ModuleError
from ..pipeline.expressions import ExpressionFailed
from ..pipeline.graph import PipelineGraph
from ..pipeline.spec import Pipeline, Step, ToolUse
from .budget import BudgetExceeded
from .context import RunContext


class Child(Protocol):
    """What this module needs of a child scheduler."""

    records: dict[str, StepRecord]

    async def execute(self) -> RunStatus: ...

    def all_records(self) -> list[StepRecord]: ...


class Scheduler(Protocol):
    """What this module needs of the scheduler running the step (engine/scheduler.py; a protocol, not an
    import, since the scheduler imports this module)."""

    run: RunContext
    children: dict[str, list[StepRecord]]

    def child(self, graph: PipelineGraph, prefix: str, parent: str, outputs: dict[str, Any],
              scope: Mapping[str, Any] | None = None) -> Child: ...


async def run_composite(parent: Scheduler, step: Step, record: StepRecord, inputs: dict[str, Any]) -> Any:
    control = step.control
    assert control is not None
    if control.loop is not None:
        return await run_loop(parent, step, record, inputs)
    return await run_sub_pipeline(parent, step, record, inputs)


async def run_loop(parent: Scheduler, step: Step, record: StepRecord, inputs: dict[str, Any]) -> Any:
    """Iterations until `until` holds or max_iterations; the chosen body output of the last iteration."""
    assert step.control is not None and step.control.loop is not None
    loop = step.control.loop
    previous: dict[str, Any] = {}  # the body outputs read before they are produced: last iteration's
    produced: dict[str, Any] = {}
    stopped = "max_iterations"
    for iteration in range(1, loop.max_iterations + 1):
        parent.run.announce_iteration(record.id, iteration, loop.max_iterations)
        record.details["iterations"] = iteration
        produced = await _run_child(parent, step, record, parent.run.graph_of(loop), f"{record.id}#{iteration}/",
                                    {**inputs, **previous}, None, f"iteration {iteration}", iteration)
        previous = {name: produced[name] for name in loop.backward if name in produced}
        if loop.until is not None and _holds(step, loop.until, {**inputs, **produced}):
            stopped = "until"
            break
    record.details["stopped"] = stopped
    if stopped == "max_iterations" and loop.until is not None:
        message = (f"loop {record.id!r} reached max_iterations={loop.max_iterations} without "
                   f"until ({loop.until.source}) holding")
        if loop.on_exhausted == "fail":
            raise ModuleError(f"{step.location}: {message}", hint="raise max_iterations, or set on_exhausted: notice")
        parent.run.notice(f"{message}: its output is the last iteration's")
    if loop.output not in produced:
        raise ModuleError(f"{step.location}: loop {record.id!r}: its output {loop.output!r} was not produced in "
                          "the last iteration", hint="make that body step run in every iteration, or choose "
                          "another output:")
    return produced[loop.output]


def _holds(step: Step, until: Any, scope: dict[str, Any]) -> bool:
    try:
        return bool(until.evaluate(scope))
    except ExpressionFailed as exc:
        raise ModuleError(f"{step.location}: loop {step.id!r}: until {exc}") from None


async def run_sub_pipeline(parent: Scheduler, step: Step, record: StepRecord, inputs: dict[str, Any]) -> Any:
    """The sub-pipeline run with this step's inputs as its run inputs; its final outputs (or the one named)."""
    assert step.control is not None and step.control.pipeline is not None
    sub = step.control.pipeline
    missing = [f"{name!r} (from {source!r})" for name, source in sub.bindings if source not in inputs]
    if missing:
        raise ModuleError(f"{step.location}: step {step.id!r}: sub-pipeline {sub.path} needs input "
                          f"{', '.join(missing)}, which has no value", hint="an optional input whose step did not "
                          "complete cannot feed a sub-pipeline: make it required, or give it a value")
    scope = {name: inputs[source] for name, source in sub.bindings}
    graph = parent.run.graph_of(sub)
    produced = await _run_child(parent, step, record, graph, f"{record.id}/", {}, scope, f"sub-pipeline {sub.path}")
    if sub.output is not None:
        if sub.output not in produced:
            raise ModuleError(f"{step.location}: step {step.id!r}: sub-pipeline {sub.path} did not produce "
                              f"{sub.output!r}")
        return produced[sub.output]
    finals = {graph.steps[step_id].output_name for step_id in graph.sinks()}
    return {name: value for name, value in produced.items() if name in finals}


async def _run_child(parent: Scheduler, step: Step, record: StepRecord, graph: PipelineGraph, prefix: str,
                     outputs: dict[str, Any], scope: dict[str, Any] | None, what: str,
                     iteration: int | None = None) -> dict[str, Any]:
    """Run `graph` on a child scheduler; the outputs its steps produced, or the step's error."""
    child = parent.child(graph, prefix, record.id, outputs, scope)
    if iteration is not None:
        for inner in child.records.values():
            inner.details["iteration"] = iteration
    try:
        status = await child.execute()
    finally:
        parent.children.setdefault(record.id, []).extend(child.all_records())
    if status == "budget_exceeded":
        raise BudgetExceeded(f"step {step.id!r}: the run's budget was exhausted in its {what}")
    if status == "failed":
        failed = next(r for sid, r in child.records.items() if r.status == "failed" and graph.steps[sid].critical)
        reason = (failed.error or "").splitlines()[0] if failed.error else "failed"
        raise ModuleError(f"{step.location}: step {step.id!r}: {what}: step {failed.id!r} failed: {reason}")
    return {graph.steps[sid].output_name: r.output for sid, r in child.records.items() if r.status in SUCCESS_STATUSES}


async def run_spawned(parent: Scheduler, step: Step, record: StepRecord, use: ToolUse, arguments: dict[str, Any],
                      number: int) -> Any:
    """A module or sub-pipeline a model called as a tool: its records under `<step>/<tool>@<n>/`, its
    result the module's output, or the sub-pipeline's final output (a dict when it has several)."""
    prefix = f"{record.id}/{use.name}@{number}/"  # "@": "#" would read as a loop iteration
    what = f"tool {use.name!r}"
    if use.pipeline is not None:
        graph = parent.run.graph_of(use.pipeline)
        produced = await _run_child(parent, step, record, graph, prefix, {}, dict(arguments), what)
        finals = [graph.steps[step_id].output_name for step_id in graph.sinks()]
        results = {name: produced[name] for name in finals if name in produced}
        return results[finals[0]] if len(finals) == 1 and finals[0] in results else results
    inner = Step(id=use.name, module=use.target, output_name=use.name, inputs=tuple(arguments), supplement=None,
                 model_settings=step.model_settings, options={}, location=step.location, cache=step.cache)
    graph = PipelineGraph(Pipeline(use.name, step.location.path, None, (inner,)), {inner.id: []})
    produced = await _run_child(parent, step, record, graph, prefix, dict(arguments), None, what)
    return produced[use.name]
