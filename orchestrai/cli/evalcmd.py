"""`orchestrai eval EVAL.yml`: run the eval, print the table, write the reports, exit 0/1/2."""

from __future__ import annotations

import asyncio
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ValidationFailed


@dataclass
class EvalRequest:
    eval_file: Path
    config: Path | None = None
    html: Path | None = None
    junit: Path | None = None
    as_json: bool = False
    variants: list[str] = field(default_factory=list)
    concurrency: int | None = None
    no_cache: bool = False
    budget: float | None = None
    log_dir: Path | None = None
    executor: str = "local"  # or "ray": test runs as Ray tasks
    ray_address: str | None = None
    providers: dict[str, Any] = field(default_factory=dict)  # tests: ready-made providers


def eval_command(request: EvalRequest) -> int:
    """0 when every variant meets its threshold, 1 when one does not; a broken eval file raises (exit 2)."""
    from ..evals.html import html_report
    from ..evals.plan import load_eval
    from ..evals.reports import junit_xml, write_file, write_json
    from ..evals.runner import EvalOptions, run_eval
    from ..project import Project
    from .validatecmd import skip_pydantic_plugin_scan

    skip_pydantic_plugin_scan()
    executor = None
    if request.executor != "local" or request.ray_address:  # local: the eval file's concurrency by default
        from .batchcmd import make_executor

        executor = make_executor(request.executor, request.ray_address, request.concurrency or 1)
    project = Project.open(request.config)
    plan, problems = load_eval(request.eval_file, project)
    if plan is None:
        raise ValidationFailed(problems)
    try:
        unknown = [name for name in request.variants if name not in {v.name for v in plan.variants}]
        if unknown:
            raise ValidationFailed([_unknown_variant(request.eval_file, unknown[0], plan.variants)])
        options = EvalOptions(use_cache=not request.no_cache, budget_usd=request.budget, providers=request.providers,
                              log_dir=request.log_dir, variants=request.variants, concurrency=request.concurrency,
                              on_done=None if request.as_json else _progress(plan, request), executor=executor)
        report = asyncio.run(run_eval(plan, options))
    finally:
        plan.close()
    if request.as_json:
        sys.stdout.write(write_json(report) + "\n")
    else:
        print_table(report)
    if request.html is not None:
        write_file(request.html, html_report(report))
    if request.junit is not None:
        write_file(request.junit, junit_xml(report))
    return 0 if report.ok else 1


def _unknown_variant(path: Path, name: str, variants: list[Any]) -> Any:
    from ..errors import Problem

    return Problem(str(path), None, f"no variant named {name!r}",
                   f"the variants: {', '.join(v.name for v in variants)}")


def _progress(plan: Any, request: EvalRequest) -> Any:
    """One line on stderr per finished run when stderr is a terminal (a CI log stays the table alone)."""
    if not sys.stderr.isatty():
        return None
    chosen = [v for v in plan.variants if not request.variants or v.name in request.variants]
    total = len(chosen) * len(plan.tests) * plan.spec.repeat
    done = [0]

    def on_done(cell: Any, run: Any) -> None:
        done[0] += 1
        state = "pass" if run.passed else "FAIL"
        sys.stderr.write(f"\r[{done[0]}/{total}] {cell.variant} · {cell.test}: {state}\033[K")
        if done[0] == total:
            sys.stderr.write("\n")
        sys.stderr.flush()

    return on_done


def print_table(report: Any) -> None:
    """Tests x variants (PASS/FAIL, score, cost, time), each failure's first reason, then one line per variant."""
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    from ..evals.reports import failure_lines

    console = Console(highlight=False)
    table = Table(title=f"eval {report.name}", show_lines=True)
    table.add_column("test")
    for variant in report.variants:
        table.add_column(variant.name)
    for test in report.tests:
        row: list[Text | str] = [test]
        for variant in report.variants:
            cell = report.cell(test, variant.name)
            cost = f"${cell.cost_usd:.4f}" if cell.cost_usd is not None else "$?"
            runs = f" {sum(r.passed for r in cell.runs)}/{len(cell.runs)}" if len(cell.runs) > 1 else ""
            text = Text("PASS" if cell.passed else "FAIL", style="bold green" if cell.passed else "bold red")
            text.append(f"{runs} {cell.score:.2f} {cost} {cell.latency_s:.2f}s")
            reasons = failure_lines(cell)
            if reasons:
                text.append("\n" + reasons[0][:120], style="red")
            row.append(text)
        table.add_row(*row)
    console.print(table)
    for variant in report.variants:
        verdict = "[green]met[/]" if variant.met else "[bold red]missed[/]"
        console.print(f"{variant.name}: {variant.passed}/{variant.total} passed ({variant.pass_rate:.0%}), "
                      f"threshold {variant.threshold:.0%}: {verdict}")
