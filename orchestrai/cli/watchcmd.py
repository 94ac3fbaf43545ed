"""`run --watch`: run, then run again each time a file the pipeline is made of is saved.

Each run after the first resumes from the one before, so only the steps whose prompt, settings,
schema, module or inputs changed make calls (with `--from-run RUN --only STEP`, that step alone,
from the same stored inputs every time). After each run the steps whose output changed are
listed, with a short diff. Saves are noticed by polling modification times (no watcher
dependency); `sleep` and `runs` make the loop drivable from a test.
"""

from __future__ import annotations

import difflib
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import yaml
from rich.console import Console
from rich.markup import escape

from ..engine.resume import ResumeSource
from ..engine.runner import RunResult
from ..errors import OrchestraiError
from ..observe.memory_log import read_log
from ..pipeline.graph import PipelineGraph
from ..pipeline.spec import module_steps
from ..project import Project
from .render import stderr_console
from .runcmd import RunRequest, close_events, execute, load_for_run

POLL_S = 0.5
DIFF_LINES = 20  # of each changed output; the memory log has the rest
Snapshot = dict[Path, tuple[int, int] | None]


def watch_command(request: RunRequest, *, sleep: Callable[[float], None] = time.sleep, runs: int | None = None,
                  console: Console | None = None) -> int:
    """Run until Ctrl-C (or `runs` runs); the exit code of the last run."""
    from .validatecmd import skip_pydantic_plugin_scan

    skip_pydantic_plugin_scan()
    console = console or stderr_console()
    code, files, before = 0, [Path(request.pipeline)] if request.pipeline else [], None
    previous: ResumeSource | None = None
    done = 0
    try:
        while True:
            try:
                project = Project.open(request.config)
                graph, source = load_for_run(request, project)
                files = watched_files(project, graph)
                resume = source if request.only is not None or previous is None else previous
                code, result, log = execute(request, project, graph, resume, console)
                if result is not None:
                    report_changes(console, before, result)
                    before = outputs_of(result)
                if log is not None and log.is_file() and request.only is None:
                    previous = ResumeSource.from_log(log, read_log(log))
            except OrchestraiError as exc:  # a half-edited file: say what is wrong, wait for the next save
                console.print(f"[red]{escape(str(exc))}[/]", highlight=False)
                code = exc.exit_code
            done += 1
            if runs is not None and done >= runs:
                return code
            console.print(f"watching {len(files)} files for changes (Ctrl-C to stop)", highlight=False)
            wait_for_change(files, sleep)
    except KeyboardInterrupt:
        return code
    finally:
        close_events(request)


def watched_files(project: Project, graph: PipelineGraph) -> list[Path]:
    """The pipeline, the config, and every prompt, Python module and schema file its steps use."""
    found = [Path(graph.pipeline.path)]
    if project.config.path is not None:
        found.append(project.config.path)
    for step in module_steps(graph.pipeline):
        prompt = project.registry.prompt_path(step.module)
        if prompt is not None:
            found.append(prompt)
        info = project.registry.resolve(step.module)
        if info is not None and info.kind == "project" and Path(info.source).is_file():
            found.append(Path(info.source))
    found.extend(_schema_files(Path(graph.pipeline.path)))
    return list(dict.fromkeys(path.resolve() for path in found))


def _schema_files(pipeline: Path) -> Iterator[Path]:
    try:
        doc = yaml.safe_load(pipeline.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return
    todo: list[Any] = [doc]
    while todo:
        node = todo.pop()
        if isinstance(node, dict):
            value = node.get("output_schema")
            if isinstance(value, str) and (pipeline.parent / value).is_file():
                yield pipeline.parent / value
            todo.extend(node.values())
        elif isinstance(node, list):
            todo.extend(node)


def snapshot(files: list[Path]) -> Snapshot:
    stamps: Snapshot = {}
    for path in files:
        try:
            stat = path.stat()
            stamps[path] = (stat.st_mtime_ns, stat.st_size)
        except OSError:
            stamps[path] = None
    return stamps


def wait_for_change(files: list[Path], sleep: Callable[[float], None]) -> None:
    start = snapshot(files)
    while snapshot(files) == start:
        sleep(POLL_S)


def outputs_of(result: RunResult) -> dict[str, Any]:
    return {r.id: r.output for r in result.records if r.succeeded and r.parent is None}


def report_changes(console: Console, before: dict[str, Any] | None, result: RunResult) -> None:
    """Which steps ran again, and which outputs changed (with a diff) since the last run."""
    if before is None:
        return
    after = outputs_of(result)
    ran = [r.id for r in result.records if r.parent is None and r.status not in ("resumed", "skipped")]
    changed = [step for step in after if step in before and after[step] != before[step]]
    console.print(f"ran again: {', '.join(ran) or 'nothing'}; outputs changed: {', '.join(changed) or 'none'}",
                  highlight=False)
    for step in changed:
        old, new = _text(before[step]).splitlines(), _text(after[step]).splitlines()
        diff = list(difflib.unified_diff(old, new, f"{step} (before)", f"{step} (now)", lineterm="", n=1))
        for line in diff[:DIFF_LINES]:
            style = "green" if line.startswith("+") else "red" if line.startswith("-") else "dim"
            console.print(f"[{style}]{escape(line)}[/]", highlight=False)
        if len(diff) > DIFF_LINES:
            console.print(f"[dim]... {len(diff) - DIFF_LINES} more lines[/]", highlight=False)


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, indent=2, sort_keys=True, default=str)
