"""A run's report as one self-contained HTML page: header and totals, errors first when the run
failed, what the log lacks, the DAG, the Gantt timeline, totals by step and by model, and each step
(messages, output, attempts, tool calls) collapsible.

Nothing is fetched (inline CSS, script and SVG; a Content-Security-Policy that allows nothing else)
and every value is escaped: outputs are untrusted model text.
"""

from __future__ import annotations

import json
from html import escape
from typing import Any
from urllib.parse import quote

from ..htmltext import display_text
from ..observe.costs import money
from .assets import CSP, SCRIPT, STYLE, css_status
from .model import RunReport, StepView
from .timeline import legend_html, timeline_svg


def html_page(title: str, body: str) -> str:
    """The page around `body`: the CSP, the style, the script (shared by the report and the comparison)."""
    return (f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
            f"<meta http-equiv='Content-Security-Policy' content=\"{CSP}\">"
            f"<meta name='viewport' content='width=device-width, initial-scale=1'>"
            f"<title>{escape(title)}</title><style>{STYLE}</style></head><body><main>{body}</main>"
            f"<script>{SCRIPT}</script></body></html>\n")


def html_report(report: RunReport, *, expanded: bool = False) -> str:
    """The page; `expanded` opens every step and timeline row (for print and PDF)."""
    body = (header(report) + _problems(report) + _errors(report) + _notices(report) + _graph(report)
            + f"<h2 id='timeline'>Timeline</h2>{legend_html()}<div class='figure'>"
            f"{timeline_svg(report, expanded=expanded)}</div>" + _totals(report)
            + "<h2 id='steps'>Steps</h2>" + "".join(_step(view, expanded) for view in report.steps))
    return html_page(f"{report.pipeline} · run {report.run_id}", body)


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    if seconds >= 60:
        return f"{int(seconds // 60)}m {seconds % 60:04.1f}s"
    return f"{seconds:.2f} s" if seconds >= 0.1 else f"{seconds * 1000:.1f} ms"


def header(report: RunReport) -> str:
    status = css_status(report.status)
    dry = " <span class='meta'>(dry run)</span>" if report.dry_run else ""
    counts: dict[str, int] = {}
    for view in report.steps:
        counts[view.status] = counts.get(view.status, 0) + 1
    steps = ", ".join(f"{n} {s}" for s, n in counts.items())
    cards = [("status", report.status), ("duration", duration(report.duration_s)),
             ("steps", str(len(report.steps))), ("input tokens", f"{report.input_tokens:,}"),
             ("output tokens", f"{report.output_tokens:,}"), ("cost", report.cost_text)]
    card_html = "".join(f"<div class='card' data-total='{escape(name, True)}'><span>{escape(name)}</span>"
                        f"<b>{escape(value)}</b></div>" for name, value in cards)
    message = f"<p class='meta'>{escape(report.message)}</p>" if report.message else ""
    return (f"<header><h1>{escape(report.pipeline)} <span class='badge status-{status}' id='run-status' "
            f"data-status='{escape(report.status, True)}'>{escape(report.status)}</span>{dry}</h1>"
            f"<p class='meta'>run <code>{escape(report.run_id)}</code> · started {escape(report.started_at or '—')}"
            f" · {escape(steps)} · <code>{escape(report.path)}</code></p>{message}"
            f"<div class='cards'>{card_html}</div></header>")


def _box(kind: str, title: str, lines: list[str]) -> str:
    """A box of plain lines (escaped), or nothing when there are none."""
    if not lines:
        return ""
    items = "".join(f"<li>{escape(line)}</li>" for line in lines)
    return f"<section class='box {kind}' id='{kind}'><b>{escape(title)}</b><ul>{items}</ul></section>"


def _problems(report: RunReport) -> str:
    return _box("problems", "What this log lacks", report.problems)


def _errors(report: RunReport) -> str:
    failed = report.failed_steps
    if not failed:
        return ""
    items = "".join(f"<li data-step='{escape(v.id, True)}'><a href='#step-{quote(v.id)}'><b>{escape(v.id)}</b></a>"
                    f" <span class='meta'>({escape(v.module)}, {escape(v.status)})</span>: "
                    f"<span class='error'>{escape(v.error or 'no error recorded')}</span></li>" for v in failed)
    title = "What failed" if any(v.status != "interrupted" for v in failed) else "What did not finish"
    return f"<section class='box errors' id='errors'><h2>{title}</h2><ul>{items}</ul></section>"


def _notices(report: RunReport) -> str:
    return _box("notices", "Notices", report.notices)


def _graph(report: RunReport) -> str:
    from ..observe.dag import DagNode, render_svg

    def node(view: StepView) -> DagNode:
        return DagNode(view.id, view.id.rpartition("/")[2] or view.id, view.status, view.duration_s,
                       view.fold or view.module, tuple(node(child) for child in view.children))

    svg = render_svg([node(view) for view in report.steps], report.edges, title=report.pipeline)
    hint = " Click a folded step to show its items, iterations or steps." if any(v.children for v in report.steps) \
        else ""
    return (f"<h2 id='graph'>Graph</h2><p class='meta'>Steps coloured by status.{hint}</p>"
            f"<div class='figure'>{svg}</div>")


def _totals(report: RunReport) -> str:
    rows = "".join(f"<tr data-step='{escape(v.id, True)}' data-input-tokens='{v.sums.input_tokens}' "
                   f"data-output-tokens='{v.sums.output_tokens}' "
                   f"data-cost='{v.sums.cost_usd if v.sums.priced else ''}'>"
                   f"<td><span class='dot status-{css_status(v.status)}'></span>"
                   f"{escape(v.id)}{_fold(v)}</td><td>{escape(v.status)}</td>"
                   f"<td class='num'>{duration(v.duration_s)}</td><td class='num'>{v.sums.input_tokens:,}</td>"
                   f"<td class='num'>{v.sums.output_tokens:,}</td><td class='num'>{escape(v.cost_text)}</td></tr>"
                   for v in report.steps)
    total = (f"<tr class='total' id='totals-row'><td>total</td><td>{escape(report.status)}</td>"
             f"<td class='num'>{duration(report.duration_s)}</td><td class='num' data-total='input_tokens'>"
             f"{report.input_tokens:,}</td><td class='num' data-total='output_tokens'>{report.output_tokens:,}</td>"
             f"<td class='num' data-total='cost'>{escape(report.cost_text)}</td></tr>")
    head = ("<tr><th>{}</th><th>{}</th><th class='num'>{}</th><th class='num'>input tokens</th>"
            "<th class='num'>output tokens</th><th class='num'>cost</th></tr>")
    models = "".join(f"<tr data-model='{escape(m.model, True)}'><td>{escape(m.model)}</td>"
                     f"<td class='num'>{m.calls}</td><td class='num'></td><td class='num'>{m.input_tokens:,}</td>"
                     f"<td class='num'>{m.output_tokens:,}</td><td class='num'>{escape(money(m.cost_usd))}</td>"
                     "</tr>" for m in report.by_model)
    by_model = (f"<h3>By model</h3><table id='by-model'><thead>{head.format('model', 'calls', '')}</thead>"
                f"<tbody>{models}</tbody></table>") if report.by_model else ""
    return (f"<h2 id='totals'>Totals</h2><h3>By step</h3><table id='by-step'><thead>"
            f"{head.format('step', 'status', 'time')}</thead><tbody>{rows}{total}</tbody></table>{by_model}")


def _fold(view: StepView) -> str:
    return f" <span class='fold'>{escape(view.fold)}</span>" if view.fold else ""


def _step(view: StepView, expanded: bool) -> str:
    status = css_status(view.status)
    where = f"{view.provider}/{view.model}" if view.model else view.module
    parts = [f"<p class='error'>{escape(view.error)}</p>" if view.error else "",
             f"<p class='meta'>module {escape(view.module)} · {escape(where)} · started "
             f"{escape(str(view.raw.get('started_at') or '—'))} · {view.sums.input_tokens:,} in / "
             f"{view.sums.output_tokens:,} out tokens · {escape(view.cost_text)}</p>",
             _messages(view.raw.get("messages")), _output(view), _attempts(view), _tool_calls(view)]
    shown, left_out = view.shown_children()
    kids = "".join(_step(child, expanded) for child in shown)
    if left_out:
        kids += f"<p class='meta'>… and {left_out:,} more (all in the memory log)</p>"
    if kids:
        parts.append(f"<h3>{escape(view.fold or 'nested steps')}</h3><div class='children'>{kids}</div>")
    return (f"<details class='step status-{status}' id='step-{escape(view.id, True)}' "
            f"data-step='{escape(view.id, True)}' data-status='{escape(view.status, True)}'"
            f"{' open' if expanded or (view.failed and not view.children) else ''}><summary>"
            f"<span class='dot'></span><span class='id'>{escape(view.id)}</span><span>{escape(view.status)}</span>"
            f"{_fold(view)}<span class='meta'>{duration(view.duration_s)} · {escape(view.cost_text)}</span></summary>"
            f"<div class='body'>{''.join(parts)}</div></details>")


def _messages(messages: Any) -> str:
    if not isinstance(messages, list) or not messages:
        return ""
    items = []
    for message in messages:
        if not isinstance(message, dict):
            continue
        calls = message.get("tool_calls")
        extra = f"\n→ tool calls: {json.dumps(calls, ensure_ascii=False, default=str)}" if calls else ""
        items.append(f"<div class='msg'><span class='role'>{escape(str(message.get('role', '?')))}</span>"
                     f"<pre>{escape(str(message.get('content') or ''))}{escape(extra)}</pre></div>")
    return f"<details><summary>Messages ({len(items)})</summary>{''.join(items)}</details>"


def _output(view: StepView) -> str:
    output = view.raw.get("output")
    if output is None:
        return ""
    return f"<h3>Output</h3><pre class='output'>{escape(display_text(output))}</pre>"


def _attempts(view: StepView) -> str:
    if not view.attempts:
        return ""
    rows = []
    for attempt in view.attempts:
        result = (f"{attempt['latency_s']:.3f} s" if "latency_s" in attempt
                  else f"<span class='error'>{escape(str(attempt.get('kind') or 'error'))}: "
                       f"{escape(str(attempt.get('error') or ''))}</span>")
        rows.append(f"<tr><td class='num'>{escape(str(attempt.get('attempt', '')))}</td>"
                    f"<td>{escape(str(attempt.get('model') or ''))}</td>"
                    f"<td>{escape(str(attempt.get('started_at')))}</td>"
                    f"<td class='num'>{_secs(attempt.get('rate_limit_wait_s'))}</td><td>{result}</td>"
                    f"<td class='num'>{_secs(attempt.get('wait_s'))}</td></tr>")
    return ("<h3>Attempts</h3><table class='attempts'><thead><tr><th class='num'>#</th><th>model</th><th>started</th>"
            "<th class='num'>rate-limit wait</th><th>result</th><th class='num'>retry wait</th></tr></thead>"
            f"<tbody>{''.join(rows)}</tbody></table>")


def _secs(value: object) -> str:
    return f"{value:.2f} s" if isinstance(value, int | float) and value else ""


def _tool_calls(view: StepView) -> str:
    if not view.tool_calls:
        return ""
    rows = []
    for call in view.tool_calls:
        refused = " <span class='badge status-failed'>refused</span>" if call.get("refused") else ""
        outcome = (f"<span class='error'>{escape(str(call['error']))}</span>" if call.get("error") is not None
                   else f"<pre>{escape(display_text(call.get('result')))}</pre>")
        rows.append(f"<tr data-tool='{escape(str(call.get('name')), True)}'>"
                    f"<td class='num'>{escape(str(call.get('round', '')))}</td>"
                    f"<td><code>{escape(str(call.get('name')))}</code>{refused}</td>"
                    f"<td><pre>{escape(json.dumps(call.get('arguments'), ensure_ascii=False, default=str))}</pre></td>"
                    f"<td>{outcome}</td><td class='num'>{_secs(call.get('duration_s'))}</td></tr>")
    return ("<h3>Tool calls</h3><table class='tool-calls'><thead><tr><th class='num'>round</th><th>tool</th>"
            "<th>arguments</th><th>result / error</th><th class='num'>time</th></tr></thead>"
            f"<tbody>{''.join(rows)}</tbody></table>")
