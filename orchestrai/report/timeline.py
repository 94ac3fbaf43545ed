"""The Gantt timeline of a run as inline SVG: one row per step, a bar from its start to its end, its
attempts as segments (calls, failed attempts, retry waits and rate-limit waits hatched), a time axis.

Rows are flat `<g class="row">` elements; a fan-out's items, a loop's iterations and a sub-pipeline's
steps are rows carrying `data-parent`, shown or hidden by clicking their parent's row (the page's
script moves the rows below); they start shown when the whole timeline has at most 30 rows.
Positions are computed here for the initial state, so the picture is right without the script
(and, with `expanded`, for print: every row shown).
"""

from __future__ import annotations

import math
from html import escape

from .assets import css_status
from .model import RunReport, StepView

ROW = 24
LABEL_W = 230
CHART_W = 820
AXIS_H = 34
OPEN_UP_TO = 30  # rows: a timeline this short starts with every child row shown
WIDTH = LABEL_W + CHART_W + 64  # room for the last bar's time
LEGEND = (("call", "model call"), ("failed", "failed attempt"), ("retry_wait", "retry wait"),
          ("rate_wait", "rate-limit wait"))

DEFS = ("<defs><pattern id='hatch-retry' width='6' height='6' patternUnits='userSpaceOnUse' "
        "patternTransform='rotate(45)'><rect width='6' height='6' fill='#fde7c7'/>"
        "<line x1='0' y1='0' x2='0' y2='6' stroke='#e08a1e' stroke-width='3'/></pattern>"
        "<pattern id='hatch-rate' width='6' height='6' patternUnits='userSpaceOnUse' "
        "patternTransform='rotate(-45)'><rect width='6' height='6' fill='#e6e0fa'/>"
        "<line x1='0' y1='0' x2='0' y2='6' stroke='#7a5cc7' stroke-width='3'/></pattern></defs>")


def timeline_svg(report: RunReport, *, expanded: bool = False) -> str:
    rows = [row for step in report.steps for row in _rows(step, 0)]
    starts = [v.started for v, _, _ in rows if v.started is not None]
    if not starts:
        return "<p class='meta'>No step has a start time in this log: there is no timeline to draw.</p>"
    origin = min([*starts, *([report.started] if report.started else [])])
    ends = [t for v, _, _ in rows for t in (v.finished, *(s.end for s in v.segments())) if t is not None]
    span = max([*ends, *starts]) - origin
    span = span if span > 0 else 0.001
    scale = CHART_W / span
    expanded = expanded or len(rows) <= OPEN_UP_TO
    body, y = [], AXIS_H
    for view, depth, parent in rows:
        shown = expanded or depth == 0
        body.append(_row(view, parent, depth, origin, scale, y, shown, expanded))
        y += ROW if shown else 0
    height = y + 8
    return (f"<svg class='timeline' xmlns='http://www.w3.org/2000/svg' width='{WIDTH}' "
            f"height='{height}' viewBox='0 0 {WIDTH} {height}' role='img' "
            f"aria-label='timeline of the steps' data-row-height='{ROW}' data-top='{AXIS_H}'>{DEFS}"
            f"{_axis(span, scale)}{''.join(body)}</svg>")


def legend_html() -> str:
    swatches = "".join(f"<span class='swatch'><svg width='22' height='12'><rect class='key seg-{kind}' width='22' "
                       f"height='12' rx='2'/></svg>{escape(text)}</span>"
                       for kind, text in LEGEND)
    return f"<p class='legend'>{swatches}<span class='swatch'><svg width='22' height='12'><rect class='key bar-key' " \
           f"width='22' height='12' rx='2'/></svg>step (start to end)</span></p>"


def _rows(view: StepView, depth: int, parent: str | None = None) -> list[tuple[StepView, int, str | None]]:
    """The step's row and its children's, each with the row it folds under (`parent`)."""
    kids = view.shown_children()[0]
    return [(view, depth, parent), *(row for child in kids for row in _rows(child, depth + 1, view.id))]


def _row(view: StepView, parent_id: str | None, depth: int, origin: float, scale: float, y: int, shown: bool,
         open_: bool) -> str:
    parent = f" data-parent='{escape(parent_id, True)}'" if parent_id is not None else ""
    label = view.id  # an item keeps its whole id (`findings[2]`), a loop's or sub-pipeline's step its tail
    if parent_id and view.id.startswith(parent_id) and not view.id.endswith("]"):
        label = view.id[len(parent_id):].lstrip("/")  # `#2/draft`, `plan`
    text = (("▾ " if open_ else "▸ ") if view.children else "") + label
    texts = f"<text class='label' x='{6 + depth * 14}' y='{ROW / 2 + 4}'>{escape(_clip(text, 30 - depth * 2))}</text>"
    bar = ""
    if view.started is not None:
        end = view.finished if view.finished is not None else view.started + (view.duration_s or 0.0)
        x = LABEL_W + (view.started - origin) * scale
        width = max((end - view.started) * scale, 2.0)
        time = f"{view.duration_s:.3f} s" if view.duration_s is not None else "unfinished"
        left_out = view.shown_children()[1]
        time += f" · {left_out:,} rows left out (all in the log)" if left_out else ""
        bar = (f"<rect class='bar status-{css_status(view.status)}' x='{x:.1f}' y='4' width='{width:.1f}' "
               f"height='{ROW - 8}' rx='3'><title>{escape(view.id)}: {escape(view.status)}, {time}</title></rect>")
        bar += "".join(_segment(s.kind, LABEL_W + (s.start - origin) * scale, max((s.end - s.start) * scale, 1.5),
                                s.label) for s in view.segments())
        bar += (f"<text class='dur' x='{x + width + 4:.1f}' y='{ROW / 2 + 4}'>"
                f"{escape(time)}</text>")
    style = "" if shown else " style='display:none'"
    return (f"<g class='row{' has-children' if view.children else ''}' data-step='{escape(view.id, True)}' "
            f"data-status='{escape(view.status, True)}' data-depth='{depth}'{parent} transform='translate(0,{y})'"
            f"{style}><rect class='band' x='0' y='0' width='{WIDTH}' height='{ROW}'/>"
            f"{texts}{bar}</g>")


def _segment(kind: str, x: float, width: float, label: str) -> str:
    return (f"<rect class='seg seg-{kind}' data-kind='{kind}' x='{x:.1f}' y='8' width='{width:.1f}' "
            f"height='{ROW - 16}' rx='1'><title>{escape(label)}</title></rect>")


def _axis(span: float, scale: float) -> str:
    step = nice_step(span / 8)
    ticks, value = [], 0.0
    while value <= span + step * 1e-6:
        x = LABEL_W + value * scale
        ticks.append(f"<line class='tick' x1='{x:.1f}' x2='{x:.1f}' y1='{AXIS_H - 6}' y2='100%'/>"
                     f"<text class='tick-label' x='{x:.1f}' y='{AXIS_H - 12}'>{escape(seconds(value, step))}</text>")
        value += step
    return f"<g class='axis'>{''.join(ticks)}</g>"


def nice_step(raw: float) -> float:
    """1, 2 or 5 times a power of ten, at least `raw`."""
    power = 10 ** math.floor(math.log10(raw)) if raw > 0 else 1.0
    return next(m * power for m in (1, 2, 5, 10) if m * power >= raw)


def seconds(value: float, step: float) -> str:
    if step >= 60:
        return f"{int(value // 60)}m{int(value % 60):02d}s"
    if step >= 1:
        return f"{value:.0f} s"
    if step >= 0.01:
        return f"{value:.2f} s"
    return f"{value * 1000:.1f} ms"


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"
