"""Reports of stored runs (`orchestrai report`): HTML, Markdown, PDF, and two runs compared.

    report = open_run(log_dir, "a498f9be")           # a run id, its start, or a log path
    write_report(Path("report.html"), report)         # .html, .md or .pdf by the suffix

Everything is read from the memory log (no re-run); `loading.py` tolerates logs cut short, older
logs and runs still journaling, and says what is missing in `RunReport.problems`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from ..errors import InputError
from .loading import load, locate
from .model import RunReport, build

FORMATS = {".html": "html", ".htm": "html", ".md": "markdown", ".markdown": "markdown", ".pdf": "pdf"}

__all__ = ["FORMATS", "RunReport", "open_run", "render", "write_report"]


def open_run(log_dir: Path, ref: str, redact: Callable[[str], str] | None = None) -> RunReport:
    """The report model of run `ref`; every text passed through `redact` first (the log is already
    redacted by the run; this is for keys the config knows now)."""
    path = locate(log_dir, ref)
    try:
        loaded = load(path)
        if redact is not None:
            loaded.log = json.loads(redact(json.dumps(loaded.log, ensure_ascii=False, default=str)))
        return build(loaded)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:  # a field of a type no orchestrai wrote
        raise InputError(f"{path}: a memory log orchestrai cannot read ({type(exc).__name__}: {exc})",
                         hint="`orchestrai logs show RUN --json` prints it as it is") from None


def format_of(target: Path) -> str:
    fmt = FORMATS.get(target.suffix.lower())
    if fmt is None:
        raise InputError(f"{target}: a report is .html, .md or .pdf, not {target.suffix or 'a file without suffix'}",
                         hint="e.g. -o report.html")
    return fmt


def render(report: RunReport, fmt: str, other: RunReport | None = None, *, expanded: bool = False) -> str:
    """The report (or the comparison with `other`) as HTML or Markdown text."""
    if other is not None:
        from .compare import compare, compare_html, compare_markdown

        comparison = compare(report, other)
        return compare_markdown(comparison) if fmt == "markdown" else compare_html(comparison)
    if fmt == "markdown":
        from .markdown import markdown_report

        return markdown_report(report)
    from .html import html_report

    return html_report(report, expanded=expanded)


def write_report(target: Path, report: RunReport, other: RunReport | None = None,
                 redact: Callable[[str], str] | None = None) -> Path:
    """Write the report to `target` in the format its suffix names; returns `target`."""
    fmt = format_of(target)
    text = render(report, "html" if fmt == "pdf" else fmt, other, expanded=fmt == "pdf")
    if redact is not None:
        text = redact(text)
    if fmt == "pdf":
        from .pdf import write_pdf

        write_pdf(text, target)
    else:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
    return target
