"""Run every test of an eval under every variant (`repeat` times), all runs sharing one `Shared`.

Each run is an executor task: a `LocalExecutor` runs up to the eval's `concurrency` at once in this
process, a `RayExecutor` across a cluster. One failing fails its own cell and never the others.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..batch.executor import Executor, LocalExecutor
from ..engine.runner import new_run_id
from ..engine.shared import Shared
from .plan import EvalPlan
from .testrun import RunOutcome, chosen_output, final_output, run_error, run_test
from .worker import EvalRunner

__all__ = ["Cell", "EvalOptions", "EvalReport", "RunOutcome", "VariantSummary", "chosen_output", "final_output",
           "run_error", "run_eval", "run_test"]


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
