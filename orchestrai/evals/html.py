"""A self-contained HTML report: variants side by side, failed assertions highlighted, diffs between variants.

One file, no scripts and nothing fetched: it opens from a CI artifact as it is. Every value is escaped.
"""

from __future__ import annotations

from html import escape

from ..htmltext import display_text, word_diff
from .runner import Cell, EvalReport

__all__ = ["display_text", "html_report", "word_diff"]

_STYLE = """
body{font-family:system-ui,sans-serif;margin:1.5rem;color:#222}
table{border-collapse:collapse;margin-bottom:1.5rem}
th,td{border:1px solid #ccc;padding:.4rem .6rem;vertical-align:top;text-align:left}
td.pass{background:#eefbea} td.fail{background:#fdecec}
.status{font-weight:bold} .pass .status{color:#17692b} .fail .status{color:#a11}
pre{white-space:pre-wrap;max-width:40rem;margin:.3rem 0;font-size:.85rem}
li.failed-assertion{color:#a11;font-weight:bold;background:#ffd7d7}
li.passed-assertion{color:#17692b}
ins{background:#c8f5c8;text-decoration:none} del{background:#f8c8c8}
.meta{color:#555;font-size:.85rem}
"""


def html_report(report: EvalReport) -> str:
    baseline = report.variants[0].name if report.variants else None
    rows = "".join(_row(report, test, baseline) for test in report.tests)
    heads = "".join(f"<th scope='col' data-variant='{escape(v.name, True)}'>{escape(v.name)}</th>"
                    for v in report.variants)
    return (f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>eval {escape(report.name)}</title>"
            f"<style>{_STYLE}</style></head><body><h1>eval {escape(report.name)}</h1>"
            f"<p class='meta'>{escape(report.path)} · repeat {report.repeat} · {report.duration_s:.1f} s · "
            f"{'all variants met their thresholds' if report.ok else 'some variant missed its threshold'}</p>"
            f"{_summary(report)}<h2>Results</h2><table id='results'><thead><tr><th scope='col'>test</th>{heads}"
            f"</tr></thead><tbody>{rows}</tbody></table></body></html>\n")


def _summary(report: EvalReport) -> str:
    rows = "".join(
        f"<tr data-variant='{escape(v.name, True)}' class='{'met' if v.met else 'missed'}'><td>{escape(v.name)}</td>"
        f"<td>{v.passed}/{v.total}</td><td>{v.pass_rate:.0%}</td><td>{v.threshold:.0%}</td>"
        f"<td class='{'pass' if v.met else 'fail'}'><span class='status'>{_met(v.met)}</span></td></tr>"
        for v in report.variants)
    return ("<h2>Variants</h2><table id='summary'><thead><tr><th>variant</th><th>passed</th><th>pass rate</th>"
            f"<th>threshold</th><th>result</th></tr></thead><tbody>{rows}</tbody></table>")


def _met(met: bool) -> str:
    return "met" if met else "missed"


def _row(report: EvalReport, test: str, baseline: str | None) -> str:
    base_text = _text(report.cell(test, baseline)) if baseline else ""
    cells = "".join(_cell(report.cell(test, v.name), base_text if v.name != baseline else None, baseline)
                    for v in report.variants)
    return f"<tr data-test='{escape(test, True)}'><th scope='row'>{escape(test)}</th>{cells}</tr>"


def _text(cell: Cell) -> str:
    run = cell.runs[0] if cell.runs else None
    return display_text(run.output) if run is not None and run.output is not None else ""


def _cell(cell: Cell, base_text: str | None, baseline: str | None) -> str:
    state = "pass" if cell.passed else "fail"
    cost = f"${cell.cost_usd:.6f}" if cell.cost_usd is not None else "cost unknown"
    runs = f" · {sum(r.passed for r in cell.runs)}/{len(cell.runs)} runs" if len(cell.runs) > 1 else ""
    items = []
    for run in cell.runs:
        prefix = f"run {run.repeat}: " if len(cell.runs) > 1 else ""
        if run.error:
            items.append(f"<li class='failed-assertion'>{escape(prefix + run.error)}</li>")
        items += [f"<li class='{'passed' if a.passed else 'failed'}-assertion'>{escape(prefix + a.message)}</li>"
                  for a in run.assertions]
    text = _text(cell)
    diff = ""
    if base_text is not None and baseline is not None:
        diff = (f"<details class='diff'><summary>diff against {escape(baseline)}</summary>"
                f"<pre>{word_diff(base_text, text)}</pre></details>")
    return (f"<td class='{state}' data-variant='{escape(cell.variant, True)}'>"
            f"<span class='status'>{state.upper()}</span> <span class='meta'>score {cell.score:.2f} · {cost} · "
            f"{cell.latency_s:.2f} s{runs}</span><pre class='output'>{escape(text)}</pre>"
            f"<ul class='assertions'>{''.join(items)}</ul>{diff}</td>")
