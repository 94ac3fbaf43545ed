"""Run one benchmark workload N times in one process, for instruction counts that do not depend on load.

    valgrind --tool=cachegrind --cache-sim=no --cachegrind-out-file=/dev/null \\
        python benchmarks/instructions.py loop 1
    ... the same with 3; (I refs of 3 - I refs of 1) / 2 / units = instructions per step, item or iteration

Run each once without valgrind first (and without PYTHONDONTWRITEBYTECODE) so bytecode is warm, and
give both counts the same PYTHONHASHSEED (e.g. 0): with a random seed each, start-up differs by tens
of millions of instructions, which moved a per-iteration figure of `loop` by up to 180 k.
Engine only: no hooks, no memory log, no call cache; loading and validation are in both counts and cancel.
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from orchestrai_dag import write_project  # noqa: E402
from workloads import build  # noqa: E402

from orchestrai.engine.runner import RunOptions, run_pipeline  # noqa: E402
from orchestrai.project import Project  # noqa: E402


def main() -> None:
    name, times = sys.argv[1], int(sys.argv[2])
    root = Path(tempfile.mkdtemp())
    os.chdir(root)
    config, pipeline = write_project(root, build(name))
    project = Project.open(config)
    graph = project.load(pipeline)

    async def runs() -> None:
        for _ in range(times):
            result = await run_pipeline(graph, project.config, project.registry, RunOptions(use_cache=False), [])
            assert result.status == "completed", result.status

    asyncio.run(runs())


if __name__ == "__main__":
    main()
