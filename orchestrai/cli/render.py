"""Rich rendering for the CLI. Every function takes what it shows; nothing here runs anything."""

from __future__ import annotations

import json
import textwrap
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.markup import escape

from ..errors import OrchestraiError, Problem, ValidationFailed
from ..observe.costs import total_cost
from ..observe.nesting import fold_text, is_item, iteration_of, logged_sums, nest, parent_of, rolled_up

if TYPE_CHECKING:
    from rich.table import Table

FOLD_ITEMS = 20  # `logs show` summarizes a fan-out of more items than this (unless --all)


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


def modules_table(modules: list[Any], descriptions: dict[str, str | None] | None = None) -> Table:
    """One row per module: name, kind, source (and what it shadows), and its description when given."""
    from rich.table import Table  # only the commands that print a table pay for importing it
    from rich.text import Text

    table = Table("module", "kind", "source", show_edge=False)
    table.columns[2].overflow = "fold"  # a path cut short with "…" cannot be opened
    if descriptions is not None:
        table.add_column("description", ratio=1)
    for info in modules:
        source = Text(_short_path(info.source))
        for hidden in info.shadows:  # what the same name would be without this module
            source.append(f"\nshadows {hidden.kind} {_short_path(hidden.source)}", style="yellow")
        row: list[Any] = [info.name, info.kind, source]
        if descriptions is not None:
            row.append(Text(descriptions.get(info.name) or "—"))
        table.add_row(*row)
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


def print_run(console: Console, path: Path, log: dict[str, Any], *, show_all: bool = False) -> None:
    """A logged run: its header, then each step with its nested records (items, iterations, sub-steps)
    indented under it. A fan-out of more than FOLD_ITEMS items shows a count and its failed items,
    unless `show_all`."""
    totals = log.get("totals") or {}
    console.print(f"[bold]{escape(log.get('pipeline', '?'))}[/] run {log['run_id']} — {log.get('status')}  "
                  f"({escape(str(path))})", highlight=False)
    console.print(f"started {log.get('started_at')}, finished {log.get('finished_at') or '—'}; "
                  f"{totals.get('input_tokens', 0):,}→{totals.get('output_tokens', 0):,} tokens, "
                  f"{total_cost(totals.get('cost_usd'), totals.get('cost_complete', True))}", highlight=False)
    top, children = nest(log.get("steps", []), lambda s: (s["id"], s.get("parent") or parent_of(s["id"])))
    for step in top:
        _print_step(console, step, children, 0, show_all)


def _print_step(console: Console, step: dict[str, Any], children: dict[str, list[dict[str, Any]]], depth: int,
                show_all: bool) -> None:
    from rich.text import Text

    kids = children.get(step["id"], [])
    note = fold_text(step.get("details") or {}, [(kid["id"], kid["status"]) for kid in kids])
    title = f"{step['id']} ({step['module']}) — {step['status']}" + (f" · {note}" if note else "")
    pad = "  " * depth
    if depth == 0:
        console.rule(Text(title), align="left")
    else:
        console.print(Text(f"{pad}── {title}", style="bold"), highlight=False)
    sums = rolled_up(step, children, lambda s: str(s["id"]), logged_sums)
    summed = " (its nested steps summed)" if kids and logged_sums(step).empty and not sums.empty else ""
    console.print(Text(f"{pad}model {step.get('model') or '—'} via {step.get('provider') or '—'}; "
                       f"{sums.input_tokens:,}→{sums.output_tokens:,} tokens{summed}; {step.get('duration_s') or 0}s"))
    if step.get("error"):
        console.print(Text(textwrap.indent(step["error"], pad), style="red"))
    items = [kid for kid in kids if is_item(kid["id"])]
    # A fan-out's output is the list of its items' outputs: shown with each item, not again as one blob.
    if step.get("output") is not None and not items:
        output = step["output"] if isinstance(step["output"], str) else json.dumps(step["output"], indent=2)
        console.print(Text(textwrap.indent(output, pad)))
    if len(items) > FOLD_ITEMS and not show_all:
        _print_folded_items(console, items, pad)
        kids = [kid for kid in kids if not is_item(kid["id"]) or kid["status"] in ("failed", "interrupted")]
    iteration = None
    for kid in kids:
        if iteration_of(kid["id"]) not in (None, iteration):
            iteration = iteration_of(kid["id"])
            console.print(Text(f"{pad}  iteration {iteration}", style="dim"))
        _print_step(console, kid, children, depth + 1, show_all)


def _print_folded_items(console: Console, items: list[dict[str, Any]], pad: str) -> None:
    from rich.text import Text

    counts = Counter(item["status"] for item in items)
    shown = ", ".join(f"{number:,} {status}" for status, number in counts.most_common())
    below = "; the failed ones below" if counts["failed"] or counts["interrupted"] else ""
    console.print(Text(f"{pad}  {len(items):,} items: {shown}{below} (--all shows every item)", style="dim"))


def _short_path(source: str) -> str:
    try:
        return str(Path(source).resolve().relative_to(Path.cwd().resolve()))
    except (ValueError, OSError):
        return source
