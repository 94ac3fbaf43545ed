"""`orchestrai run`: gather inputs, pick the subscribers, run, and report the result."""

from __future__ import annotations

import asyncio
import json
import select
import sys
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import typer
from rich.console import Console
from rich.markup import escape

from ..api import Hook
from ..engine.only import only_step
from ..engine.options import RunOptions
from ..engine.resume import ResumeSource
from ..engine.runner import RunResult, resumed_inputs, run_pipeline, start_inputs_needed
from ..errors import InputError
from ..observe.memory_log import MemoryLog
from ..observe.progress import LiveProgress, PlainProgress, summary_table
from ..observe.runs import find_run
from ..pipeline.graph import PipelineGraph
from ..project import Project
from .render import stderr_console
from .run_inputs import parse_inputs, read_piped_stdin

# partial: only steps marked `critical: false` failed, so the run did its job.
EXIT_CODES = {"completed": 0, "partial": 0, "failed": 1, "budget_exceeded": 3, "interrupted": 130}
STDIN_WAIT_S = 1.0  # how long to wait for piped data before deciding stdin is empty


@dataclass(kw_only=True)
class RunRequest:
    """The `run` command line, parsed."""

    pipeline: Path | None = None
    config: Path | None = None
    inputs: list[str] = field(default_factory=list)
    input_files: list[str] = field(default_factory=list)
    dry_run: bool = False
    stream: bool = False
    max_concurrency: int | None = None
    log_dir: Path | None = None
    quiet: bool = False
    as_json: bool = False
    use_wandb: bool = False
    workspace: Path | None = None
    yes: bool = False
    no_exec: bool = False
    budget: float | None = None
    resume: str | None = None
    no_cache: bool = False
    from_run: str | None = None  # with only: that step again, its inputs from this run's log
    only: str | None = None
    watch: bool = False  # the `run` command hands the request to watchcmd.watch_command
    events: str | None = None  # a file for the JSON event lines, or "-": stdout (the human output on stderr)
    event_stream: Hook | None = field(default=None, repr=False)  # opened once, shared by --watch's runs

    @property
    def events_on_stdout(self) -> bool:
        return self.events == "-"


def run_command(request: RunRequest) -> int:
    """Run one pipeline as the CLI does; returns the exit code."""
    from .validatecmd import skip_pydantic_plugin_scan

    skip_pydantic_plugin_scan()
    project = Project.open(request.config)
    graph, resume = load_for_run(request, project)
    try:
        return execute(request, project, graph, resume, stderr_console())[0]
    finally:
        close_events(request)


def load_for_run(request: RunRequest, project: Project) -> tuple[PipelineGraph, ResumeSource | None]:
    """The graph to run and what to reuse: --resume, or --from-run with --only (the graph cut to that step)."""
    if (request.only is None) != (request.from_run is None):
        raise InputError("--only and --from-run go together", hint="e.g. --from-run 3f2a9c1d --only review")
    if request.from_run is not None and request.resume is not None:
        raise InputError("--from-run and --resume cannot be combined", hint="use one of them")
    log_dir = request.log_dir or project.config.log_dir
    ref = request.resume or request.from_run
    source = _resume_source(log_dir, ref) if ref else None
    graph = project.load(request.pipeline or (Path(source.pipeline_path) if source and source.pipeline_path else None))
    if source is not None and request.only is not None:
        graph, source = only_step(graph, source, request.only)
    return graph, source


def execute(request: RunRequest, project: Project, graph: PipelineGraph, resume: ResumeSource | None,
            console: Console) -> tuple[int, RunResult | None, Path | None]:
    """One run: (exit code, result, memory log path); the result is None when interrupted."""
    log_dir = request.log_dir or project.config.log_dir
    inputs = parse_inputs(request.inputs, request.input_files)
    reused = resumed_inputs(graph, project.registry, resume) if resume is not None else {}
    # Inputs the earlier run had are reused (by the runner), not asked for again.
    _ask_for_missing_inputs(inputs, [name for name in start_inputs_needed(graph, project.registry)
                                     if name not in reused], err=request.events_on_stdout)
    memory_log = MemoryLog(log_dir)  # redacts with the run's own Redactor (every key config and providers hold)
    display = _display_hooks(request, console)
    hooks: list[Hook] = [memory_log, *display, *_wandb_hooks(request, project),
                         *event_hooks(request)]  # + webhooks, otel: the runner's
    options = RunOptions(run_inputs=inputs, dry_run=request.dry_run, stream=request.stream,
                         max_concurrency=request.max_concurrency, workspace=request.workspace,
                         allow_execution=request.yes or project.config.file.allow_execution, no_exec=request.no_exec,
                         confirm=_terminal_confirm(display) if sys.stdin is not None and sys.stdin.isatty() else None,
                         budget_usd=request.budget, use_cache=not request.no_cache, resume=resume)
    try:
        result = asyncio.run(run_pipeline(graph, project.config, project.registry, options, hooks))
    except KeyboardInterrupt:
        console.print(f"[magenta]interrupted[/]; finished steps are in {_shown(memory_log.path)}", highlight=False)
        return EXIT_CODES["interrupted"], None, memory_log.path
    _report(request, console, result, memory_log.path)
    return EXIT_CODES.get(result.status, 1), result, memory_log.path


def event_hooks(request: RunRequest) -> list[Hook]:
    """The --events stream (made on first use, then the same for every run of --watch)."""
    if request.events is None:
        return []
    if request.event_stream is None:
        from ..observe.event_stream import EventStream

        if request.events_on_stdout and request.as_json:
            raise InputError("--events - and --json both write to stdout", hint="write the events to a file")
        try:
            request.event_stream = EventStream(sys.stdout if request.events_on_stdout else request.events,
                                               tokens=request.stream)
        except OSError as exc:
            raise InputError(f"cannot write events to {request.events}: {exc.strerror or exc}") from None
    return [request.event_stream]


def close_events(request: RunRequest) -> None:
    close = getattr(request.event_stream, "close", None)
    if close is not None:
        close()


def _resume_source(log_dir: Path, ref: str) -> ResumeSource:
    path, log = find_run(log_dir, ref)
    return ResumeSource.from_log(path, log)


def _ask_for_missing_inputs(inputs: dict[str, str], needed: list[str], *, err: bool = False) -> None:
    """Fill run inputs from piped stdin (one missing input) or an interactive prompt on a TTY."""
    missing = [name for name in needed if name not in inputs]
    if not missing:
        return
    if sys.stdin is not None and sys.stdin.isatty():
        for name in missing:
            inputs[name] = typer.prompt(f"{name}", err=err)
        return
    if len(missing) == 1 and _stdin_has_data():
        piped = read_piped_stdin(sys.stdin)
        if piped is not None:
            inputs[missing[0]] = piped
    # Anything still missing is reported by the runner's preflight, with the flag to pass.


def _terminal_confirm(display: list[Hook]) -> Callable[[str], bool]:
    """A yes/no question on the terminal (the live view paused meanwhile), for consent to run generated code."""
    live = next((hook for hook in display if isinstance(hook, LiveProgress)), None)

    def confirm(question: str) -> bool:
        with live.paused() if live is not None else nullcontext():
            return typer.confirm(question, default=False, err=True)

    return confirm


def _stdin_has_data() -> bool:
    # A CI job may leave stdin open with nothing ever written: never block on it.
    try:
        readable, _, _ = select.select([sys.stdin], [], [], STDIN_WAIT_S)
    except (OSError, ValueError, TypeError):
        return False
    return bool(readable)


def _display_hooks(request: RunRequest, console: Console) -> list[Hook]:
    if request.quiet or request.as_json:
        return []
    if console.is_terminal and not request.stream:
        return [LiveProgress(console)]
    return [PlainProgress(console, stream=request.stream)]


def _wandb_hooks(request: RunRequest, project: Project) -> list[Hook]:
    settings = project.config.file.wandb
    if not (request.use_wandb or settings.enabled):
        return []
    from ..observe.wandb_hook import WandbHook

    return [WandbHook(settings.project, settings.entity, settings.mode)]  # redacts with the run's Redactor


def _report(request: RunRequest, console: Console, result: RunResult, log_path: Path | None) -> None:
    if request.as_json:
        summary = json.dumps(json_summary(result, log_path), indent=2, ensure_ascii=False, default=str)
        sys.stdout.write(result.redact(summary) + "\n")  # outputs may repeat a key the model saw
        return
    if not request.quiet:
        console.print(summary_table(result.records, result.totals))
        console.print(f"run {result.run_id} {result.status}; log: {_shown(log_path)}", highlight=False)
        rerun = {r.id: r.details["rerun_because"] for r in result.records if r.details.get("rerun_because")}
        for step_id, reason in rerun.items():
            console.print(f"  rerun {step_id}: {reason}", highlight=False)
    else:  # quiet still says why a run did not complete: one line per failed step
        for record in result.records:
            if record.status == "failed" and record.error:
                console.print(f"[red]step {escape(record.id)} failed:[/] {escape(record.error.splitlines()[0])}",
                              highlight=False)
    if result.message:
        console.print(f"[yellow]{escape(result.message)}[/]", highlight=False)
    out = sys.stderr if request.events_on_stdout else sys.stdout  # stdout then carries only the events
    if request.dry_run:
        _print_dry_run(result, out)
    elif result.status in ("completed", "partial"):
        _print_outputs(result, out)


def _print_outputs(result: RunResult, out: TextIO) -> None:
    records = {r.id: r for r in result.records}
    finals = [records[step_id] for step_id in result.final_step_ids]
    for record in finals:
        if not record.succeeded:
            continue
        if len(finals) > 1:
            out.write(f"## {record.output_name}\n")
        output = record.output if isinstance(record.output, str) else json.dumps(record.output, indent=2, default=str)
        out.write(result.redact(output).rstrip("\n") + "\n")  # a model may repeat a key: the terminal is a log too


DRY_RUN_SHOWN_PER_PARENT = 3  # a 10,000-item fan-out shows its first items, not 10,000 prompts


def _print_dry_run(result: RunResult, stream: TextIO) -> None:
    out = Console(soft_wrap=True, file=stream)
    shown: dict[str, int] = {}
    for record in result.records:
        if not record.messages:
            continue
        if record.parent is not None:
            shown[record.parent] = shown.get(record.parent, 0) + 1
            if shown[record.parent] > DRY_RUN_SHOWN_PER_PARENT:
                continue
        out.rule(f"{record.id}: would send to {record.model}", align="left")
        for message in record.messages:
            out.print(f"[bold]{escape('[' + message['role'] + ']')}[/]", highlight=False)
            out.print(escape(result.redact(message["content"])), highlight=False)
    for parent, count in shown.items():
        if count > DRY_RUN_SHOWN_PER_PARENT:
            out.print(f"... and {count - DRY_RUN_SHOWN_PER_PARENT} more under {parent} (every one is in the memory "
                      "log)", highlight=False)


def json_summary(result: RunResult, log_path: Path | None) -> dict[str, Any]:
    totals = result.totals
    return {
        "run_id": result.run_id,
        "status": result.status,
        "message": result.message,
        "notices": result.notices,
        "log": str(log_path) if log_path else None,
        "totals": {"input_tokens": totals.input_tokens, "output_tokens": totals.output_tokens,
                   "cost_usd": totals.cost_usd, "cost_complete": totals.cost_complete, "duration_s": totals.duration_s,
                   "cached_steps": totals.cached_steps, "resumed_steps": totals.resumed_steps,
                   "by_model": totals.by_model},
        "steps": [{"id": r.id, "status": r.status, "duration_s": r.duration_s, "input_tokens": r.usage.input_tokens,
                   "output_tokens": r.usage.output_tokens, "cost_usd": r.cost_usd, "error": r.error}
                  for r in result.records],
        "outputs": {r.output_name: r.output for r in result.records if r.id in result.final_step_ids and r.succeeded},
    }


def _shown(path: Path | None) -> str:
    if path is None:
        return "(no log)"
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)
