"""`orchestrai validate`: check pipelines (and the config) and report every problem.

Free of typer: the typer command and the quick path in `app.main` both call `validate_pipelines`.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..pipeline.graph import PipelineGraph
    from ..pipeline.spec import Step
    from ..project import Project


def validate_pipelines(pipelines: list[Path], config: Path | None, echo: Callable[[str], object], *,
                       verbose: bool = False) -> int:
    """One `PATH: valid — ...` line per valid pipeline, every problem of the others; returns the exit code.

    A config that cannot be loaded raises its OrchestraiError (the caller prints it and exits with its code).
    """
    skip_pydantic_plugin_scan()
    from ..project import Project

    project = Project.open(config)
    for text in project.config.notices:  # as a run shows them: "! ..." on stderr, away from the results
        sys.stderr.write(f"! {text}\n")
    failed = False
    for path in pipelines:
        if _is_eval_file(path):
            from ..evals.plan import check_eval

            summary, problems = check_eval(path, project)
            if summary is not None:
                echo(f"{path}: valid — {summary}")
                continue
            from .render import print_problems

            failed = True
            print_problems(problems)
            continue
        graph, problems = project.check(path)
        if problems:
            from .render import print_problems  # rich only when there is something to show: it costs ~60 ms to import

            failed = True
            print_problems(problems)
        else:
            assert graph is not None
            echo(f"{path}: valid — {graph.summary()}")
            if verbose:
                for line in step_lines(graph, project):
                    echo(line)
    return 2 if failed else 0


def _is_eval_file(path: Path) -> bool:
    """An eval file names its pipeline (`pipeline: file.yml`, tests:, variants:); a pipeline lists steps."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return False  # the pipeline check reports what is wrong with reading it
    from ..evals.spec import looks_like_eval

    return looks_like_eval(text)


def step_lines(graph: PipelineGraph, project: Project) -> list[str]:
    """One line per step: its module (and kind), and the provider and model it resolved to; a loop's
    body indented under it, a sub-pipeline by its file."""
    return _lines(graph.pipeline.steps, project, "  ")


def _lines(steps: tuple[Step, ...], project: Project, indent: str) -> list[str]:
    lines = []
    for step in steps:
        control, where = step.control, f"[{step.location}]"
        extra = ""
        if control is not None and control.foreach is not None:
            extra += f", foreach {control.foreach} as {control.item_name}"
        if control is not None and control.when is not None:
            extra += f", when {control.when.source}"
        if step.tools is not None:
            names = ", ".join(use.name for use in step.tools.uses) or "none"
            extra += f", tools: {names}" + (f" (role {step.tools.role})" if step.tools.role else "")
        if control is not None and control.loop is not None:
            lines.append(f"{indent}{step.id}: loop, at most {control.loop.max_iterations} iterations{extra}  {where}")
            lines += _lines(control.loop.pipeline.steps, project, indent + "  ")
            continue
        if control is not None and control.pipeline is not None:
            lines.append(f"{indent}{step.id}: runs pipeline {control.pipeline.path}{extra}  {where}")
            continue
        info = project.registry.resolve(step.module)
        kind = info.kind if info is not None else "?"
        settings = step.model_settings
        model = f"{settings.get('provider')}/{settings.get('model')}"
        how = f" (provider inferred from model {settings.get('model')!r})" if step.provider_inferred else ""
        uses = f"{model}{how}" if info is not None and info.uses_llm else f"model if it calls one: {model}"
        lines.append(f"{indent}{step.id}: {step.module} ({kind}) -> {uses}{extra}  {where}")
    return lines


def skip_pydantic_plugin_scan() -> None:
    """Spare pydantic its search for plugins when no installed distribution declares one.

    The first time pydantic builds a validator it reads the entry points of every installed
    distribution, looking for group `pydantic` (~10 ms with ~170 distributions). When none of
    their entry_points.txt even mentions the word, the answer is known to be "no plugins", and
    pydantic's cache of plugins is set to that. Called only by CLI commands, before any model is
    validated; with a pydantic plugin installed (or pydantic's internals changed) it does nothing.
    """
    from ..plugins import declared_entry_point_groups

    if declared_entry_point_groups("pydantic"):
        return
    try:
        from pydantic.plugin import _loader
    except ImportError:
        return
    if getattr(_loader, "_plugins", ()) is None and not getattr(_loader, "_loading_plugins", True):
        _loader._plugins = {}
