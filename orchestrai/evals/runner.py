"""Run every test of an eval under every variant (`repeat` times), all runs sharing one `Shared`.

Runs go concurrently up to the eval's `concurrency`; one failing (a missing input, a provider error,
a bug in a module) fails its own cell and never the others.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..batch.executor import Executor, LocalExecutor
from ..engine.options import RunOptions
from ..engine.runner import RunResult, new_run_id, run_pipeline
from ..engine.shared import Shared
from ..errors import OrchestraiError
from ..observe.memory_log import MemoryLog
from .assertions import AssertionResult, CheckContext, check
from .dataset import EvalTest
from .plan import EvalPlan
from .spec import AssertionSpec
from .variants import Variant


@dataclass
class RunOutcome:
    """One run of one test under one variant."""

    repeat: int
    passed: bool
    score: float
    cost_usd: float | None
    latency_s: float
    output: Any = None
    outputs: dict[str, Any] = field(default_factory=dict)
    assertions: list[AssertionResult] = field(default_factory=list)
    error: str | None = None  # the run (or the test) could not be run: one line
    log_path: str | None = None
    worker: str | None = None  # on Ray: the worker process that ran it


@dataclass
class Cell:
    test: str
    variant: str
    runs: list[RunOutcome] = field(default_factory=list)

    @property
    def passed(self) -> bool:  # pass^N: every repeat passed
        return bool(self.runs) and all(run.passed for run in self.runs)

    @property
    def score(self) -> float:
        return sum(r.score for r in self.runs) / len(self.runs) if self.runs else 0.0

    @property
    def cost_usd(self) -> float | None:
        costs = [r.cost_usd for r in self.runs]
        return None if any(c is None for c in costs) else round(sum(c for c in costs if c is not None), 6)

    @property
    def latency_s(self) -> float:
        return sum(r.latency_s for r in self.runs) / len(self.runs) if self.runs else 0.0


@dataclass
class VariantSummary:
    name: str
    threshold: float
    passed: int  # tests whose every repeat passed
    total: int

    @property
    def pass_rate(self) -> float:
        return self.passed / self.total if self.total else 0.0

    @property
    def met(self) -> bool:
        return self.pass_rate >= self.threshold


@dataclass
class EvalReport:
    name: str
    path: str
    repeat: int
    tests: list[str]
    variants: list[VariantSummary]
    cells: dict[tuple[str, str], Cell]  # (test, variant)
    duration_s: float = 0.0

    @property
    def ok(self) -> bool:
        return all(v.met for v in self.variants)

    def cell(self, test: str, variant: str) -> Cell:
        return self.cells[(test, variant)]


@dataclass
class EvalOptions:
    use_cache: bool = True
    budget_usd: float | None = None
    providers: dict[str, Any] = field(default_factory=dict)  # ready-made providers (tests, embedding)
    log_dir: Path | None = None  # None: config log_dir / evals / <eval name>
    variants: list[str] = field(default_factory=list)  # only these (all when empty)
    concurrency: int | None = None  # None: the eval file's
    on_done: Callable[[Cell, RunOutcome], None] | None = None  # progress
    executor: Executor | None = None  # None: a LocalExecutor of `concurrency` runs at once; or a RayExecutor


async def run_eval(plan: EvalPlan, options: EvalOptions | None = None) -> EvalReport:
    """Every test x variant x repeat as one executor task (a run and its assertions), one `Shared` for all."""
    from .worker import EvalRunner

    options = options or EvalOptions()
    variants = [v for v in plan.variants if not options.variants or v.name in options.variants]
    config = plan.project.config
    shared = Shared.open(config, budget_usd=options.budget_usd, use_cache=options.use_cache,
                         providers=options.providers)
    cells = {(t.name, v.name): Cell(t.name, v.name) for v in variants for t in plan.tests}
    runs = [(v, t, index, r) for v in variants for index, t in enumerate(plan.tests)
            for r in range(1, plan.spec.repeat + 1)]
    tasks = ((n, {"variant": v.name, "test": index, "repeat": r}) for n, (v, _, index, r) in enumerate(runs))
    log_dir = options.log_dir or config.log_dir / "evals" / plan.name
    runner = EvalRunner(plan.path, config.path, f"eval-{new_run_id()}", log_dir, options.use_cache,
                        options.budget_usd).attach(plan, shared)
    executor = options.executor or LocalExecutor(options.concurrency or plan.spec.concurrency)
    started = time.time()
    try:
        async for result in executor.run_rows(tasks, runner):
            variant, test, _, repeat = runs[result["row"]]
            outcome = result.get("outcome") or RunOutcome(repeat, False, 0.0, None, 0.0, error=result.get("error"))
            outcome.worker = result.get("worker")
            cell = cells[(test.name, variant.name)]
            cell.runs.append(outcome)
            if options.on_done is not None:
                options.on_done(cell, outcome)
    finally:
        await shared.aclose()
    for cell in cells.values():
        cell.runs.sort(key=lambda run: run.repeat)
    summaries = [VariantSummary(v.name, v.threshold, sum(cells[(t.name, v.name)].passed for t in plan.tests),
                                len(plan.tests)) for v in variants]
    return EvalReport(plan.name, str(plan.path), plan.spec.repeat, [t.name for t in plan.tests], summaries, cells,
                      round(time.time() - started, 3))


async def run_test(plan: EvalPlan, variant: Variant, test: EvalTest, repeat: int, shared: Shared,
                   use_cache: bool, log_dir: Path) -> RunOutcome:
    """One run and its assertions; whatever goes wrong becomes the outcome's one-line error."""
    if test.error is not None:
        return RunOutcome(repeat, False, 0.0, None, 0.0, error=test.error)
    use_cache = use_cache and plan.spec.repeat == 1  # repeats measure the model, not the cache
    memory_log = MemoryLog(log_dir)
    run_options = RunOptions(run_inputs=dict(test.vars), shared=shared, use_cache=use_cache)
    started = time.monotonic()
    try:
        result = await run_pipeline(variant.graph, plan.project.config, variant.registry, run_options, [memory_log])
    except OrchestraiError as exc:
        return RunOutcome(repeat, False, 0.0, None, time.monotonic() - started, error=exc.message.splitlines()[0])
    except Exception as exc:  # a bug in a module: this cell fails, the eval goes on
        return RunOutcome(repeat, False, 0.0, None, time.monotonic() - started,
                          error=f"{type(exc).__name__}: {exc}".splitlines()[0])
    outcome = RunOutcome(repeat, False, 0.0, result.totals.cost_usd, result.totals.duration_s,
                         output=final_output(variant, result), outputs=dict(result.outputs),
                         log_path=str(memory_log.path) if memory_log.path else None)
    if result.status not in ("completed", "partial"):
        outcome.error = run_error(result)
        return outcome

    async def judge(spec: AssertionSpec, text: str) -> AssertionResult:
        return await plan.judges.judge(spec, text, shared, use_cache)

    for spec, _ in test.assertions:
        value, missing = chosen_output(spec, variant, result, outcome.output)
        if missing:
            outcome.assertions.append(AssertionResult(spec.type, False, 0.0, f"{spec.type}: {missing}"))
            continue
        ctx = CheckContext(value, test.row, outcome.cost_usd, outcome.latency_s, plan.path.parent,
                           outcome.outputs, judge)
        outcome.assertions.append(await check(spec, ctx))
    outcome.passed = all(a.passed for a in outcome.assertions)
    outcome.score = (sum(a.score for a in outcome.assertions) / len(outcome.assertions)) if outcome.assertions \
        else 1.0
    return outcome


def final_output(variant: Variant, result: RunResult) -> Any:
    """The final step's output, or {output_name: output} when the pipeline ends in several."""
    names = [variant.graph.steps[step_id].output_name for step_id in result.final_step_ids]
    if len(names) == 1:
        return result.outputs.get(names[0])
    return {name: result.outputs.get(name) for name in names}


def chosen_output(spec: AssertionSpec, variant: Variant, result: RunResult, final: Any) -> tuple[Any, str | None]:
    """The value an assertion looks at (the final output, or its `step:`'s), or why there is none."""
    if spec.step is None:
        return final, None
    step = variant.graph.steps.get(spec.step)
    name = step.output_name if step is not None else spec.step
    if name not in result.outputs:
        return None, f"step {spec.step!r} produced no output (skipped or failed)"
    return result.outputs[name], None


def run_error(result: RunResult) -> str:
    failed = next((r for r in result.records if r.status == "failed"), None)
    if failed is not None and failed.error:
        return f"run {result.status}: step {failed.id!r}: {failed.error.splitlines()[0]}"
    return f"run {result.status}" + (f": {result.message}" if result.message else "")
