"""One test run of an eval as an executor's task: `EvalRunner` is the eval's `(number, task) -> result` callable.

Like a batch's `RowRunner` it holds only plain settings, so it pickles to Ray workers: the first
call in a process opens the project, loads the eval (its variants, overlays and judges) and opens
one `Shared`. The driver hands its own plan and Shared to a local runner (`attach`), so the eval is
loaded once and a broken eval file fails before any test runs. A task names its variant, its test
(by index) and its repeat; the result carries the `RunOutcome` (a dataclass: it pickles back).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..batch.executor import SharedFactory
from ..batch.results import RowResult
from ..engine.shared import Shared
from ..errors import ValidationFailed
from ..project import Project
from .plan import EvalPlan, load_eval
from .testrun import run_test


@dataclass
class EvalRunner:
    eval_file: Path
    config: Path | None
    eval_id: str
    log_dir: Path
    use_cache: bool = True
    budget_usd: float | None = None
    dry_run: bool = False  # evals have no dry run; the executor contract asks for the switch
    shared_factory: SharedFactory | None = None
    providers: dict[str, Any] = field(default_factory=dict)  # ready-made providers (tests); not pickled
    _plan: EvalPlan | None = field(default=None, repr=False)
    _shared: Shared | None = field(default=None, repr=False)
    _owns: bool = field(default=False, repr=False)

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "providers": {}, "_plan": None, "_shared": None, "_owns": False}

    @property
    def key(self) -> str:
        return self.eval_id

    def attach(self, plan: EvalPlan, shared: Shared) -> EvalRunner:
        """Use the driver's loaded plan and Shared (which the driver closes)."""
        self._plan, self._shared = plan, shared
        return self

    def open(self) -> tuple[EvalPlan, Shared]:
        if self._plan is None:
            plan, problems = load_eval(self.eval_file, Project.open(self.config))
            if plan is None:  # the driver loaded the same file: only a file changed meanwhile gets here
                raise ValidationFailed(problems)
            self._plan, self._owns = plan, True
        if self._shared is None:
            config = self._plan.project.config
            self._shared = self.shared_factory(config) if self.shared_factory else Shared.open(
                config, budget_usd=self.budget_usd, use_cache=self.use_cache, providers=self.providers)
            self._owns = True
        return self._plan, self._shared

    def driver_budget(self) -> float | None:
        return self.open()[1].budget.limit_usd

    def shipped(self, shared_factory: SharedFactory) -> EvalRunner:
        plan = self.open()[0]
        return dataclasses.replace(self, eval_file=self.eval_file.resolve(), config=plan.project.config.path,
                                   log_dir=self.log_dir.resolve(), shared_factory=shared_factory)

    async def aclose(self) -> None:
        """Close what this runner opened itself (a worker's plan and Shared), not what `attach` gave it."""
        if self._owns:
            if self._shared is not None:
                await self._shared.aclose()
            if self._plan is not None:
                self._plan.close()
            self._plan, self._shared, self._owns = None, None, False

    async def __call__(self, number: int, task: dict[str, Any]) -> RowResult:
        plan, shared = self.open()
        variant = next(v for v in plan.variants if v.name == task["variant"])
        outcome = await run_test(plan, variant, plan.tests[task["test"]], task["repeat"], shared, self.use_cache,
                                 self.log_dir)
        return {"row": number, "outcome": outcome}
