"""Two runs side by side: per step (matched by id) status, time and cost with deltas, outputs side by
side with a word diff, and the steps only one run has."""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from html import escape
from urllib.parse import quote

from ..htmltext import display_text, word_diff
from ..observe.nesting import depth_of
from .assets import css_status
from .html import duration, header, html_page
from .markdown import cell
from .model import RunReport, StepView


@dataclass
class Pair:
    id: str
    a: StepView
    b: StepView

    @property
    def text_a(self) -> str:
        return _text(self.a)

    @property
    def text_b(self) -> str:
        return _text(self.b)

    @property
    def changed(self) -> bool:
        return self.text_a != self.text_b or self.a.status != self.b.status


@dataclass
class Comparison:
    a: RunReport
    b: RunReport
    pairs: list[Pair]
    only_a: list[StepView]
    only_b: list[StepView]


def compare(a: RunReport, b: RunReport) -> Comparison:
    """Every record (children too) matched by id, in run A's order."""
    steps_a = {v.id: v for v in a.all_steps}
    steps_b = {v.id: v for v in b.all_steps}
    pairs = [Pair(step_id, view, steps_b[step_id]) for step_id, view in steps_a.items() if step_id in steps_b]
    return Comparison(a, b, pairs, [v for k, v in steps_a.items() if k not in steps_b],
                      [v for k, v in steps_b.items() if k not in steps_a])


def _text(view: StepView) -> str:
    output = view.raw.get("output")
    return display_text(output) if output is not None else (f"error: {view.error}" if view.error else "")


def _delta(a: float | None, b: float | None, unit: str) -> str:
    if a is None or b is None:
        return ""
    change = b - a
    if abs(change) < 1e-9:
        return "<span class='meta'>±0</span>"
    size = abs(change)
    shown = duration(size) if unit == "s" else f"${size:.4f}" if size >= 0.0001 else f"${size:.6f}"
    return f"<span class='delta-{'up' if change > 0 else 'down'}'>{'+' if change > 0 else '−'}{shown}</span>"


def _cost(view: StepView) -> float | None:
    return view.sums.cost_usd if view.sums.priced else None


def compare_html(comparison: Comparison) -> str:
    a, b = comparison.a, comparison.b
    rows = "".join(
        f"<tr data-step='{escape(p.id, True)}' class='{'changed' if p.changed else 'same'}'>"
        f"<td style='padding-left:{0.55 + depth_of(p.id)}rem'><a href='#diff-{quote(p.id)}'>{escape(p.id)}</a></td>"
        f"<td><span class='dot status-{css_status(p.a.status)}'></span>{escape(p.a.status)}</td>"
        f"<td><span class='dot status-{css_status(p.b.status)}'></span>{escape(p.b.status)}</td>"
        f"<td class='num'>{duration(p.a.duration_s)}</td><td class='num'>{duration(p.b.duration_s)}</td>"
        f"<td class='num'>{_delta(p.a.duration_s, p.b.duration_s, 's')}</td>"
        f"<td class='num'>{escape(p.a.cost_text)}</td><td class='num'>{escape(p.b.cost_text)}</td>"
        f"<td class='num'>{_delta(_cost(p.a), _cost(p.b), '$')}</td></tr>" for p in comparison.pairs)
    table = ("<h2>Steps</h2><table id='compare'><thead><tr><th>step</th><th>status A</th><th>status B</th>"
             "<th class='num'>time A</th><th class='num'>time B</th><th class='num'>Δ time</th>"
             "<th class='num'>cost A</th><th class='num'>cost B</th><th class='num'>Δ cost</th></tr></thead>"
             f"<tbody>{rows}</tbody></table>")
    only = "".join(f"<h3>Only in run {name} ({escape(run.run_id)})</h3><ul class='only-{name.lower()}'>"
                   + "".join(f"<li data-step='{escape(v.id, True)}'>{escape(v.id)} ({escape(v.status)})</li>"
                             for v in views) + "</ul>"
                   for name, run, views in (("A", a, comparison.only_a), ("B", b, comparison.only_b)) if views)
    shown = sorted((p for p in comparison.pairs if p.text_a or p.text_b), key=lambda p: not p.changed)
    diffs = "".join(_diff_block(p) for p in shown)  # the changed outputs first
    body = (f"<h1>Comparison</h1><p class='meta'>A = run {escape(a.run_id)} · B = run {escape(b.run_id)}</p>"
            f"<div class='side'><div>{header(a)}</div><div>{header(b)}</div></div>{table}{only}"
            f"<h2>Outputs</h2>{diffs}")
    return html_page(f"compare {a.run_id} and {b.run_id}", body)


def _diff_block(pair: Pair) -> str:
    same = not pair.changed
    return (f"<details class='step' id='diff-{escape(pair.id, True)}' data-step='{escape(pair.id, True)}'"
            f"{'' if same else ' open'}><summary><span class='id'>{escape(pair.id)}</span>"
            f"<span class='meta'>{'same output' if same else 'changed'}</span></summary><div class='body'>"
            f"<div class='side'><div><h3>A</h3><pre>{escape(pair.text_a)}</pre></div><div><h3>B</h3>"
            f"<pre>{escape(pair.text_b)}</pre></div></div><h3>Diff (A → B)</h3>"
            f"<pre class='diff'>{word_diff(pair.text_a, pair.text_b)}</pre></div></details>")


def compare_markdown(comparison: Comparison) -> str:
    a, b = comparison.a, comparison.b
    lines = [f"## Runs `{cell(a.run_id)}` (A) and `{cell(b.run_id)}` (B) of {cell(a.pipeline)}", "",
             "| step | status A | status B | time A | time B | cost A | cost B |",
             "| --- | --- | --- | ---: | ---: | ---: | ---: |"]
    lines += [f"| {cell(p.id)} | {cell(p.a.status)} | {cell(p.b.status)} | {duration(p.a.duration_s)} | "
              f"{duration(p.b.duration_s)} | {cell(p.a.cost_text)} | {cell(p.b.cost_text)} |" for p in comparison.pairs]
    lines += [f"| **total** | {cell(a.status)} | {cell(b.status)} | {duration(a.duration_s)} | "
              f"{duration(b.duration_s)} | {cell(a.cost_text)} | {cell(b.cost_text)} |", ""]
    for name, views in (("A", comparison.only_a), ("B", comparison.only_b)):
        if views:
            lines += [f"Only in {name}: " + ", ".join(cell(v.id) for v in views), ""]
    for pair in comparison.pairs:
        if pair.text_a != pair.text_b:
            diff = difflib.unified_diff(pair.text_a.splitlines(), pair.text_b.splitlines(), "A", "B", lineterm="")
            lines += [f"<details><summary>{escape(pair.id)}: output changed</summary>", "", "```diff",
                      *[line.replace("```", "ˋˋˋ") for line in diff], "```", "", "</details>", ""]
    return "\n".join(lines).rstrip() + "\n"
