"""Small helpers to run pipelines through the library in tests."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from orchestrai.engine.runner import RunOptions, RunResult, run_pipeline
from orchestrai.observe.memory_log import MemoryLog
from orchestrai.project import Project


def run_library(pipeline: str | Path, *, config: str | Path | None = None, inputs: dict[str, Any] | None = None,
                providers: dict[str, Any] | None = None, log_dir: Path | None = None, hooks: list[Any] | None = None,
                **options: Any) -> tuple[RunResult, MemoryLog]:
    """Open the project, load the pipeline and run it with a memory log; returns the result and the log hook."""
    project = Project.open(config)
    graph = project.load(pipeline)
    memory_log = MemoryLog(log_dir or project.config.log_dir)  # the run redacts: no caller needs to
    run_options = RunOptions(run_inputs=inputs or {}, providers=providers or {}, **options)
    result = asyncio.run(run_pipeline(graph, project.config, project.registry, run_options,
                                      [memory_log, *(hooks or [])]))
    return result, memory_log
