"""Rich rendering for the CLI. Every function takes what it shows; nothing here runs anything."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.markup import escape

from ..errors import OrchestraiError, Problem, ValidationFailed
from ..observe.costs import total_cost

if TYPE_CHECKING:
    from rich.table import Table


def stdout_console(*, min_width_when_piped: int | None = None) -> Console:
    """The console for results. Piped output (CI logs, grep) may be given a width so tables never cut ids."""
    console = Console(soft_wrap=True)
    if min_width_when_piped and not console.is_terminal:
        console = Console(soft_wrap=True, width=max(console.width, min_width_when_piped))
    return console


def stderr_console() -> Console:
    return Console(stderr=True, soft_wrap=True)


def print_error(exc: OrchestraiError) -> None:
    if isinstance(exc, ValidationFailed):
        print_problems(exc.problems)
        return
    console = stderr_console()
    console.print(f"[bold red]error:[/] {escape(exc.message)}", highlight=False)
    if exc.hint:
        console.print(f"  [dim]hint:[/] {escape(exc.hint)}", highlight=False)


def print_problems(problems: list[Problem]) -> None:
    console = stderr_console()
    for problem in problems:
        where = f"{problem.path}:{problem.line}" if problem.line else problem.path
        console.print(f"[bold]{escape(where)}[/]: [red]{escape(problem.message)}[/]", highlight=False)
        if problem.hint:
            console.print(f"  [dim]hint:[/] {escape(problem.hint)}", highlight=False)


def modules_table(modules: list[Any]) -> Table:
    from rich.table import Table  # only the commands that print a table pay for importing it
    from rich.text import Text

    table = Table("module", "kind", "source", show_edge=False)
    table.columns[2].overflow = "fold"  # a path cut short with "…" cannot be opened
    for info in modules:
        source = Text(_short_path(info.source))
        for hidden in info.shadows:  # what the same name would be without this module
            source.append(f"\nshadows {hidden.kind} {_short_path(hidden.source)}", style="yellow")
        table.add_row(info.name, info.kind, source)
    return table


def runs_table(runs: list[Any]) -> Table:
    from rich.table import Table

    table = Table(show_edge=False)
    for column in ("started (UTC)", "run", "pipeline", "status", "steps", "cached", "resumed", "tokens", "cost"):
        # Ids and times must stay whole to be copied into `logs show`; the pipeline name may wrap.
        table.add_column(column, no_wrap=column != "pipeline", overflow="fold")
    for run in runs:
        table.add_row(run.started_at[:19].replace("T", " "), run.run_id, run.pipeline, run.status,
                      f"{run.steps_completed}/{run.steps}", str(run.cached), str(run.resumed),
                      f"{run.input_tokens + run.output_tokens:,}", total_cost(run.cost_usd, run.cost_complete))
    return table


def print_cache_stats(console: Console, stats: dict[str, Any]) -> None:
    console.print(f"path: {stats['path']}\nentries: {stats['entries']}\nsize: {stats['bytes']:,} bytes",
                  highlight=False)
    if stats.get("problem"):
        console.print(f"[red]{escape(stats['problem'])}[/]", highlight=False)


def print_run(console: Console, path: Path, log: dict[str, Any]) -> None:
    totals = log.get("totals") or {}
    console.print(f"[bold]{escape(log.get('pipeline', '?'))}[/] run {log['run_id']} — {log.get('status')}  "
                  f"({escape(str(path))})", highlight=False)
    console.print(f"started {log.get('started_at')}, finished {log.get('finished_at') or '—'}; "
                  f"{totals.get('input_tokens', 0):,}→{totals.get('output_tokens', 0):,} tokens, "
                  f"{total_cost(totals.get('cost_usd'), totals.get('cost_complete', True))}", highlight=False)
    for step in log.get("steps", []):
        usage = step.get("usage") or {}
        console.rule(f"{step['id']} ({step['module']}) — {step['status']}", align="left")
        console.print(f"model {step.get('model') or '—'} via {step.get('provider') or '—'}; "
                      f"{usage.get('input_tokens', 0):,}→{usage.get('output_tokens', 0):,} tokens; "
                      f"{step.get('duration_s') or 0}s", highlight=False)
        if step.get("error"):
            console.print(f"[red]{escape(step['error'])}[/]", highlight=False)
        if step.get("output") is not None:
            output = step["output"] if isinstance(step["output"], str) else json.dumps(step["output"], indent=2)
            console.print(escape(output), highlight=False)


def _short_path(source: str) -> str:
    try:
        return str(Path(source).resolve().relative_to(Path.cwd().resolve()))
    except (ValueError, OSError):
        return source
