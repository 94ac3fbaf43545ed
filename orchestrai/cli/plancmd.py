"""`orchestrai plan "TASK"`: ask for a pipeline, show it for review, write it when it validates, maybe run it."""

from __future__ import annotations

import asyncio
import sys
from dataclasses import dataclass, field
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape

from ..errors import InputError
from ..planner import PlanOutcome, default_target, make_plan, write_plan
from ..project import Project
from .render import print_problems, stderr_console
from .run_inputs import parse_inputs
from .runcmd import EXIT_CODES, RunRequest, run_command


@dataclass(kw_only=True)
class PlanRequest:
    """The `plan` command line, parsed."""

    task: str
    output: Path | None = None
    config: Path | None = None
    run: bool = False
    create_modules: bool = False
    yes: bool = False
    force: bool = False
    inputs: list[str] = field(default_factory=list)  # for --run
    input_files: list[str] = field(default_factory=list)
    log_dir: Path | None = None


def plan_command(request: PlanRequest) -> int:
    """Plan, review, write and (with --run) run; returns the exit code."""
    from ..observe.memory_log import MemoryLog
    from ..observe.progress import LiveProgress, PlainProgress
    from .validatecmd import skip_pydantic_plugin_scan

    skip_pydantic_plugin_scan()
    project = Project.open(request.config)
    target = _target(request, project)
    parse_inputs(request.inputs, request.input_files)  # a bad --input fails now, before anything is spent
    console = stderr_console()
    memory_log = MemoryLog(request.log_dir or project.config.log_dir)
    progress = LiveProgress(console) if console.is_terminal else PlainProgress(console)
    try:
        outcome = asyncio.run(make_plan(project, request.task, target=target, create_modules=request.create_modules,
                                        hooks=[memory_log, progress]))
    except KeyboardInterrupt:
        console.print("[magenta]interrupted[/]; nothing was written", highlight=False)
        return EXIT_CODES["interrupted"]
    log = _shown(memory_log.path)
    _print_attempts(console, outcome)
    plan = outcome.plan
    if plan is None:
        return _failed(console, outcome, log)
    from ..plan_check import display, prompt_dir
    from ..plan_review import review_lines

    assert plan.graph is not None
    out = sys.stdout
    out.write(f"── plan: {display(target)} ──\n{plan.yaml_text}")
    for module in plan.modules:
        out.write(f"── new prompt module: {display(prompt_dir(project) / (module.name + '.md'))} ──\n"
                  f"{module.file_text()}")
    totals = outcome.result.totals
    planning = (f"planning: {len(outcome.candidates)} answer(s), {totals.input_tokens:,}→{totals.output_tokens:,} "
                f"tokens, {_cost(totals.cost_usd, totals.cost_complete)}; log: {log}")
    out.write("── review ──\n" + "\n".join([*review_lines(plan.graph, project.registry, project.config),
                                           planning]) + "\n")
    out.flush()
    written = write_plan(plan, target, prompt_dir(project), force=request.force)
    console.print("wrote " + ", ".join(escape(display(path)) for path in written), highlight=False)
    if not request.run:
        return 0
    if not request.yes and not typer.confirm(f"Run {display(target)} now?", default=False, err=True):
        console.print(f"not run; later: orchestrai run {escape(display(target))}", highlight=False)
        return 0
    return run_command(RunRequest(pipeline=target, config=request.config, inputs=request.inputs,
                                  input_files=request.input_files, log_dir=request.log_dir))


def _target(request: PlanRequest, project: Project) -> Path:
    """Where the plan goes, checked before anything is spent: a .yml/.yaml file, new unless --force; and
    --run must be able to ask (a terminal) or be told (--yes)."""
    from ..plan_check import display

    target = (request.output or default_target(project, request.task)).resolve()
    if target.suffix not in (".yml", ".yaml"):
        raise InputError(f"-o {request.output}: a pipeline file ends in .yml or .yaml", hint="e.g. -o pipelines/x.yml")
    if target.exists() and not request.force:
        raise InputError(f"{display(target)} exists; a plan never replaces a file unasked",
                         hint="pass --force to replace it, or -o to choose another file")
    if target.is_dir():
        raise InputError(f"{display(target)} is a folder", hint="give -o a file name ending in .yml")
    if request.run and not request.yes and not (sys.stdin is not None and sys.stdin.isatty()):
        raise InputError("plan --run asks before it runs the plan, and there is no terminal to ask on",
                         hint="pass --yes to run it without asking, or leave out --run and use orchestrai run later")
    return target


def _print_attempts(console: Console, outcome: PlanOutcome) -> None:
    """Every answer's problems, in order (the last one too when none validated)."""
    for number, candidate in enumerate(outcome.candidates, 1):
        if candidate.problems:
            last = number == len(outcome.candidates) and outcome.plan is None
            what = "remaining problems" if last else "sent back to the planner"
            console.print(f"[yellow]planner answer {number}: {len(candidate.problems)} problem(s), {what}:[/]",
                          highlight=False)
            print_problems(candidate.problems)


def _failed(console: Console, outcome: PlanOutcome, log: str) -> int:
    status = outcome.result.status
    judged_only = bool(outcome.candidates) and status == "failed" and all(c.problems for c in outcome.candidates)
    message = outcome.error or f"the planner's run ended {status}"
    console.print(f"[bold red]error:[/] {escape(message)}", highlight=False)
    console.print(f"  [dim]log:[/] {escape(log)}", highlight=False)
    if judged_only:
        return 2  # the answers never validated: a plan problem, like any validation failure
    return EXIT_CODES.get(status, 1)


def _cost(cost: float | None, complete: bool) -> str:
    from ..observe.costs import total_cost

    return total_cost(cost, complete)


def _shown(path: Path | None) -> str:
    if path is None:
        return "(no log)"
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)
