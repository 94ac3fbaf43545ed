"""A run's report as Markdown, for pasting into an issue or a PR: a summary table, failed steps first,
a table per step, totals by model, the timeline as a compact list, outputs in <details> blocks.

GitHub renders HTML tags inside Markdown, so text that could be read as markup (a model's output)
is escaped: `<` in a table cell or a <details> block shows as text.
"""

from __future__ import annotations

from html import escape

from ..htmltext import display_text
from ..observe.costs import money
from .html import duration
from .model import RunReport, StepView

OUTPUT_LIMIT = 1500  # characters of an output shown; the HTML report has all of it


def markdown_report(report: RunReport) -> str:
    lines = [f"## Run `{cell(report.run_id)}` of {cell(report.pipeline)}: **{cell(report.status)}**", "",
             "| status | started | duration | steps | input tokens | output tokens | cost |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: |",
             f"| {cell(report.status)} | {cell(report.started_at or '—')} | {duration(report.duration_s)} | "
             f"{len(report.steps)} | {report.input_tokens:,} | {report.output_tokens:,} | {cell(report.cost_text)} |",
             ""]
    if report.problems:
        lines += ["> **What this log lacks**", *[f"> - {cell(p)}" for p in report.problems], ""]
    if report.failed_steps:
        lines += ["### Failed steps", ""]
        lines += [f"- **{cell(v.id)}** ({cell(v.module)}, {cell(v.status)}): {cell(v.error or 'no error recorded')}"
                  for v in report.failed_steps]
        lines.append("")
    lines += _steps_table(report) + _models_table(report) + _timeline(report) + _outputs(report)
    return "\n".join(lines).rstrip() + "\n"


def _steps_table(report: RunReport) -> list[str]:
    ordered = sorted(report.steps, key=lambda v: not v.failed)  # failed first, otherwise in the log's order
    rows = [f"| {cell(v.id)}{' — ' + cell(v.fold) if v.fold else ''} | {cell(v.status)} | "
            f"{duration(v.duration_s)} | {v.sums.input_tokens:,} | {v.sums.output_tokens:,} | {cell(v.cost_text)} |"
            for v in ordered]
    return ["### Steps", "", "| step | status | time | input tokens | output tokens | cost |",
            "| --- | --- | ---: | ---: | ---: | ---: |", *rows,
            f"| **total** | {cell(report.status)} | {duration(report.duration_s)} | {report.input_tokens:,} | "
            f"{report.output_tokens:,} | {cell(report.cost_text)} |", ""]


def _models_table(report: RunReport) -> list[str]:
    if not report.by_model:
        return []
    rows = [f"| {cell(m.model)} | {m.calls} | {m.input_tokens:,} | {m.output_tokens:,} | {money(m.cost_usd)} |"
            for m in report.by_model]
    return ["### By model", "", "| model | calls | input tokens | output tokens | cost |",
            "| --- | ---: | ---: | ---: | ---: |", *rows, ""]


def _timeline(report: RunReport) -> list[str]:
    """`   0.00 s →    1.20 s  plan (completed, 1 failed attempt, retry wait 0.50 s)`, a line per top-level step."""
    origin = report.started or min((v.started for v in report.steps if v.started is not None), default=None)
    if origin is None:
        return []
    lines = ["### Timeline", "", "```"]
    for view in sorted(report.steps, key=lambda v: v.started if v.started is not None else float("inf")):
        if view.started is None:
            lines.append(f"{'':>9}   {'':>9}  {view.id} ({view.status}, never started)")  # aligned with the rest
            continue
        end = view.finished if view.finished is not None else view.started
        lines.append(f"{view.started - origin:7.2f} s → {end - origin:7.2f} s  {view.id} ({_facts(view)})")
    return [*lines, "```", ""]


def _facts(view: StepView) -> str:
    facts = [view.status]
    calls = sum(1 for a in view.attempts if "latency_s" in a)
    failed = len(view.attempts) - calls
    if calls > 1:
        facts.append(f"{calls} calls")
    if failed:
        facts.append(f"{failed} failed attempt" + ("s" if failed > 1 else ""))
    segments = view.segments()
    waits = {kind: sum(s.end - s.start for s in segments if s.kind == kind) for kind in ("retry_wait", "rate_wait")}
    if waits["retry_wait"]:
        facts.append(f"retry wait {waits['retry_wait']:.2f} s")
    if waits["rate_wait"]:
        facts.append(f"rate-limit wait {waits['rate_wait']:.2f} s")
    if view.fold:
        facts.append(view.fold)
    return ", ".join(facts)


def _outputs(report: RunReport) -> list[str]:
    lines = ["### Outputs", ""]
    for view in sorted(report.steps, key=lambda v: not v.failed):
        output = view.raw.get("output")
        if output is None and not view.error:
            continue
        text = display_text(output) if output is not None else f"error: {view.error}"
        more = len(text) - OUTPUT_LIMIT
        cut = f"\n… ({more:,} more characters in the HTML report)" if more > 0 else ""
        lines += [f"<details><summary>{escape(view.id)} ({escape(view.status)})</summary>", "",
                  f"<pre>{escape(text[:OUTPUT_LIMIT], quote=False)}{escape(cut, quote=False)}</pre>", "",
                  "</details>", ""]
    return lines if len(lines) > 2 else []


def cell(text: str) -> str:
    """Text for a table cell or a line: escaped for HTML, `|` escaped, on one line."""
    return escape(str(text), quote=False).replace("|", "\\|").replace("\n", " ")
