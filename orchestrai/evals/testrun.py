"""One test run of an eval: the pipeline run under a variant and the test's assertions, as a `RunOutcome`.

Whatever goes wrong (a missing input, a provider error, a bug in a module) becomes the outcome's
one-line error, so one run never fails the others.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..engine.options import RunOptions
from ..engine.redact import redact_data
from ..engine.runner import RunResult, run_pipeline
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

    def redacted(self, redact: Callable[[str], str]) -> RunOutcome:
        """Outputs and messages with the run's secrets replaced (reports and results files show them)."""
        self.output, self.outputs = redact_data(self.output, redact), redact_data(self.outputs, redact)
        self.error = redact(self.error) if self.error else self.error
        for result in self.assertions:
            result.message = redact(result.message)
        return self


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
        return outcome.redacted(result.redact)

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
    return outcome.redacted(result.redact)  # after the assertions, which look at the values as they are


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
