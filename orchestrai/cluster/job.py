"""One pipeline run per row, as a Ray worker does it: the `RowJob` the Ray executor sends out.

A job is a small picklable description (paths and switches), not live objects: each worker
process opens the project, the pipeline and one `Shared` once per batch and runs every row it is
given with them (one provider pool per worker process, not per row). On a worker the rate limits
and the budget are the LimitsActor's proxies; in-process (`open(None)`) they are the engine's own.

The call cache is the config's SQLite file (`cache_dir`): on one machine every worker opens the
same file (WAL mode, so readers and one writer at a time; a worker that finds it locked bypasses
it for the rest of the batch rather than wait). Across machines, point `cache_dir` at a shared
path; otherwise each node keeps its own cache, which is still correct, just colder.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..engine.options import RunOptions
from ..engine.runner import run_pipeline
from ..engine.shared import Shared
from ..errors import OrchestraiError
from ..observe.memory_log import MemoryLog
from ..pipeline.graph import PipelineGraph
from ..project import Project


@dataclass
class WorkerState:
    project: Project
    graph: PipelineGraph
    shared: Shared
    log_dir: Path


@dataclass
class PipelineRowJob:
    """Run `pipeline_path` once per row, the row's fields as run inputs."""

    pipeline_path: str
    config_path: str | None
    cwd: str
    log_dir: str
    budget_usd: float | None = None
    use_cache: bool = True
    dry_run: bool = False
    batch_id: str = field(default_factory=lambda: secrets.token_hex(4))

    @classmethod
    def prepare(cls, pipeline: str | Path, *, config: str | Path | None = None, log_dir: str | Path | None = None,
                budget_usd: float | None = None, use_cache: bool = True, dry_run: bool = False) -> PipelineRowJob:
        """Load the pipeline here first, so that its problems stop the batch before any worker starts."""
        project = Project.open(config)
        graph = project.load(pipeline)
        budget = budget_usd or graph.pipeline.budget_usd or project.config.file.budget_usd
        logs = Path(log_dir) if log_dir is not None else project.config.log_dir
        return cls(str(Path(pipeline).resolve()), str(project.config.path) if project.config.path else None,
                   os.getcwd(), str(logs.resolve()), budget, use_cache, dry_run)

    @property
    def key(self) -> str:
        return self.batch_id

    def open(self, actor: Any | None) -> WorkerState:
        """This process's project, graph and shared resources (proxies of `actor` when given)."""
        os.chdir(self.cwd)  # relative paths in the config mean what they meant on the driver
        project = Project.open(self.config_path)
        graph = project.load(self.pipeline_path)
        shared = Shared.open(project.config, budget_usd=self.budget_usd, use_cache=self.use_cache,
                             dry_run=self.dry_run)
        if actor is not None:
            from .limits import RemoteBudget, RemoteRateLimits

            shared.rate_limits = RemoteRateLimits(project.config.rate_limits, actor)
            shared.budget = RemoteBudget(shared.budget.limit_usd, actor)
        return WorkerState(project, graph, shared, Path(self.log_dir))

    async def run(self, state: WorkerState, row: int, inputs: dict[str, Any]) -> dict[str, Any]:
        """One row: a dict that goes back to the driver (and into the results file)."""
        memory_log = MemoryLog(state.log_dir)
        options = RunOptions(run_inputs=dict(inputs), shared=state.shared, run_id=f"{self.batch_id}-row{row}")
        try:
            result = await run_pipeline(state.graph, state.project.config, state.project.registry, options,
                                        [memory_log])
        except OrchestraiError as exc:
            return {"row": row, "status": "failed", "error": str(exc), "pid": os.getpid()}
        totals = result.totals
        return {"row": row, "status": result.status, "outputs": result.outputs, "run_id": result.run_id,
                "totals": {"input_tokens": totals.input_tokens, "output_tokens": totals.output_tokens,
                           "cost_usd": totals.cost_usd, "duration_s": totals.duration_s},
                "log": str(memory_log.path) if memory_log.path else None, "message": result.message,
                "pid": os.getpid()}

    async def close(self, state: WorkerState) -> None:
        await state.shared.aclose()
