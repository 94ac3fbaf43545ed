"""Terminal output for a run (a subscriber): live progress on a TTY, one line per event otherwise.

Fan-out items, loop iterations and sub-pipeline steps are folded into their step (see nesting.py):
a fan-out is one live row with a bar (`findings 37/120`), a few plain lines (start, every tenth or
few seconds, each failed item, end), and one summary row.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.markup import escape
from rich.progress_bar import ProgressBar
from rich.spinner import Spinner
from rich.table import Table
from rich.text import Text

from ..api import (
    Event,
    FanoutStarted,
    LoopIteration,
    Notice,
    RunFinished,
    RunStarted,
    StepEnded,
    StepRecord,
    StepRetrying,
    StepStarted,
    StepToken,
    ToolCalled,
)
from .costs import money, total_cost
from .nesting import depth_of, fold_text, is_item, items_text, iterations_text, nest, parent_of, record_sums, rolled_up
from .tally import Fanout, Tally

_Tally = Tally  # the name tests and older callers know

STATUS_STYLE = {"completed": "green", "cached": "cyan", "resumed": "cyan", "failed": "red", "skipped": "yellow",
                "interrupted": "magenta"}
STATUS_MARK = {"completed": "✔", "cached": "✔", "resumed": "✔", "failed": "✖", "skipped": "↷", "interrupted": "■"}
PROGRESS_EVERY_S = 5.0  # the plain view reports a fan-out at each tenth, or after this long without a line


class LiveProgress:
    """A rich live view: a header, then one line per running step (spinner, elapsed, tokens, cost).

    A fan-out is one line with a bar and an ETA, a loop one line with its iteration; the steps
    running inside a loop or sub-pipeline are drawn under it. Rich redraws at its own rate, so an
    event only updates counters (and prints the line of a step that ended, never of an item that
    succeeded).
    """

    def __init__(self, console: Console, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.console = console
        self.tally = Tally(clock)
        self._spinners: dict[str, Spinner] = {}
        self._live: Live | None = None

    def on_event(self, event: Event) -> None:
        folded = self.tally.update(event)
        if isinstance(event, RunStarted):
            self._live = Live(get_renderable=self._render, console=self.console, refresh_per_second=8, transient=True)
            self._live.start()
        elif isinstance(event, StepEnded):
            self._spinners.pop(event.record.id, None)
            line = ended_line(event.record, self.tally, folded)
            if line is not None:
                self.console.print(line)
        elif isinstance(event, StepRetrying):
            self.console.print(retry_line(event))
        elif isinstance(event, ToolCalled):
            self.console.print(tool_line(event))
        elif isinstance(event, Notice):
            self.console.print(notice_line(event))
        elif isinstance(event, RunFinished) and self._live is not None:
            self._live.stop()
            self._live = None

    @contextmanager
    def paused(self) -> Iterator[None]:
        """Stop redrawing while the user answers a question on the terminal."""
        live = self._live
        if live is not None:
            live.stop()
        try:
            yield
        finally:
            if live is not None and self._live is live:
                live.start()

    def _render(self) -> Group:
        tally = self.tally
        header = Text.assemble((f"{tally.pipeline} ", "bold"), f"{tally.done}/{tally.total} steps · "
                               f"{tally.tokens:,} tokens · "
                               f"{tally.cost_text()}")
        rows: list[Table] = []
        self._add_rows(None, 0, tally.clock(), rows)
        return Group(header, *rows)

    def _add_rows(self, under: str | None, depth: int, now: float, rows: list[Table]) -> None:
        """The running steps drawn under `under`, each followed by its own (a loop's body steps)."""
        for step_id, info in list(self.tally.children.get(under, {}).items()):
            spinner = self._spinners.setdefault(step_id, Spinner("dots", style="cyan"))
            rows.append(self._row(spinner, step_id, depth, info, now))
            self._add_rows(step_id, depth + 1, now, rows)

    def _row(self, spinner: Spinner, step_id: str, depth: int, info: dict[str, Any], now: float) -> Table:
        spent = f"{info['tokens']:,} tok  {money(info['cost'])}"
        fanout, loop = self.tally.fanouts.get(step_id), self.tally.loops.get(step_id)
        cells: list[Any] = [Text("  " * depth)] if depth else []
        if fanout is not None:
            failed = f"  {fanout.failed:,} failed" if fanout.failed else ""
            cells += [spinner, Text(f" {step_id} {fanout.done:,}/{fanout.total:,} "),
                      ProgressBar(total=max(fanout.total, 1), completed=fanout.done, width=24),
                      Text(f" {_percent(fanout)}  ETA {_clock_text(fanout.eta_s(now))}{failed}  {spent}")]
        elif loop is not None:
            cells += [spinner, Text(f" {step_id} iteration {loop[0]}/{loop[1]}  {now - info['since']:.1f}s  {spent}")]
        else:
            cells += [spinner, Text(f" {step_id} ({info['module']})  {now - info['since']:.1f}s  {spent}")]
        table = Table.grid()
        table.add_row(*cells)
        return table


class PlainProgress:
    """One line per event, for CI logs and pipes; with --stream, tokens as they arrive.

    A fan-out is not a line per item: `findings: 120 items` at its start, `findings: 48/120 items
    done` at each tenth (or every few seconds), a line per failed item, and its end line.
    """

    def __init__(self, console: Console, *, stream: bool = False, clock: Callable[[], float] = time.monotonic) -> None:
        self.console = console
        self.stream = stream
        self.tally = Tally(clock)
        self._streaming_step: str | None = None

    def on_event(self, event: Event) -> None:
        if isinstance(event, StepToken):
            if self.stream:
                if event.step_id != self._streaming_step:
                    self.console.print(f"\n[bold cyan]{escape(event.step_id)}>[/] ", end="")
                    self._streaming_step = event.step_id
                self.console.print(escape(event.text), end="", highlight=False)
            return
        self._end_stream_line()
        folded = self.tally.update(event)
        if isinstance(event, RunStarted):
            self.console.print(f"run {event.run_id}: {escape(event.pipeline)} ({self.tally.total} steps)")
        elif isinstance(event, StepEnded):
            line = ended_line(event.record, self.tally, folded)
            if line is not None:
                self.console.print(line)
            if folded is not None and folded == event.record.parent and is_item(event.record.id):
                self._item_progress(folded)
        elif folded is not None:
            pass  # inside a fan-out's item: the fan-out's own lines tell it
        elif isinstance(event, StepStarted):
            for step_id in self.tally.implied:  # a sub-pipeline step, opened by its first step's start
                self._started_line(step_id, self.tally.running[step_id]["module"])
            self._started_line(event.step_id, event.module)
        elif isinstance(event, FanoutStarted):
            self.console.print(Text(f"{_indent(event.step_id)}{event.step_id}: {items_text(event.total, 0)}"))
        elif isinstance(event, LoopIteration):
            self.console.print(Text(f"{_indent(event.step_id)}{event.step_id} iteration "
                                    f"{event.iteration}/{event.max_iterations}"))
        elif isinstance(event, StepRetrying):
            self.console.print(retry_line(event))
        elif isinstance(event, ToolCalled):
            self.console.print(tool_line(event))
        elif isinstance(event, Notice):
            self.console.print(notice_line(event))

    def _started_line(self, step_id: str, module: str) -> None:
        self.console.print(Text(f"{_indent(step_id)}▶ {step_id} started ({module})"))

    def _item_progress(self, step_id: str) -> None:
        """A line at each tenth of a fan-out's items, or when the last one is a while ago; none at the end."""
        fanout = self.tally.fanouts.get(step_id)
        if fanout is None or fanout.done >= fanout.total:
            return
        tenth, now = fanout.done * 10 // fanout.total, self.tally.clock()
        if tenth > fanout.shown_tenth or now - fanout.shown_at >= PROGRESS_EVERY_S:
            fanout.shown_tenth, fanout.shown_at = tenth, now
            failed = f", {fanout.failed:,} failed" if fanout.failed else ""
            done = f"{fanout.done:,}/{fanout.total:,} items done{failed}"
            self.console.print(Text(f"{_indent(step_id)}{step_id}: {done}"))

    def _end_stream_line(self) -> None:
        if self._streaming_step is not None:
            self.console.print()
            self._streaming_step = None


def ended_line(record: StepRecord, tally: Tally, folded: str | None) -> Text | None:
    """The line for a step that ended, indented under what it is part of; None for an item that did not fail."""
    # An item, or a step inside one: only a failed item is worth its own line.
    if folded is not None and (record.status != "failed" or record.parent != folded):
        return None
    indent = _indent(record.id)
    line = step_line(record, note=_end_note(record, tally), indent=indent)
    return Text(indent).append_text(line) if indent else line


def _end_note(record: StepRecord, tally: Tally) -> str | None:
    """`120 items, 2 failed` / `3 iterations` for a fan-out or loop, from what the view counted and the record."""
    details = record.details
    fanout, loop = tally.fanouts.get(record.id), tally.loops.get(record.id)
    if fanout is not None:
        return items_text(details.get("items", fanout.total), fanout.failed)
    if loop is not None:
        return iterations_text(details.get("iterations", loop[0]), details.get("stopped"))
    return None


def step_line(record: StepRecord, note: str | None = None, indent: str = "") -> Text:
    """`✔ id completed in 1.20s, 10→5 tokens, $0.0001`, `· 120 items, 2 failed` after it for a fan-out or loop."""
    style = STATUS_STYLE.get(record.status, "")
    text = Text(f"{STATUS_MARK.get(record.status, '?')} {record.id} {record.status}", style=style)
    folded = f" · {note}" if note else ""
    if record.status in ("completed", "cached"):
        text.append(f" in {record.duration_s or 0:.2f}s")
        if record.calls:
            text.append(f", {record.usage.input_tokens:,}→{record.usage.output_tokens:,} tokens, "
                        f"{money(record.cost_usd)}")
        text.append(folded)
    elif record.error:
        lines = record.error.splitlines()
        text.append(folded + ": " + lines[0])
        if len(lines) > 1 and lines[1].lstrip().startswith("hint:"):
            text.append(f"\n{indent}  " + lines[1].strip(), style="dim")
    else:
        text.append(folded)
    return text


def _indent(step_id: str) -> str:
    return "  " * depth_of(step_id)


def _percent(fanout: Fanout) -> str:
    return f"{100 * fanout.done // max(fanout.total, 1):3d}%"


def _clock_text(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    minutes, secs = divmod(int(seconds + 0.5), 60)
    return f"{minutes // 60}:{minutes % 60:02d}:{secs:02d}" if minutes >= 60 else f"{minutes}:{secs:02d}"


def notice_line(event: Notice) -> Text:
    return Text(f"! {event.text}", style="yellow")


def tool_line(event: ToolCalled) -> Text:
    """`↳ add(a=17, b=25) → 42`; an error or a refused call in red."""
    arguments = event.arguments
    shown = ", ".join(f"{key}={_short(value)}" for key, value in arguments.items()) if isinstance(arguments, dict) \
        else _short(arguments)
    call = f"{_indent(event.step_id)}  ↳ {event.name}({shown})"
    if event.error is not None:
        return Text(f"{call} ✘ {_short(event.error, 120)}", style="red")
    return Text(f"{call} → {_short(event.result)}")


def _short(value: Any, limit: int = 60) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def retry_line(event: StepRetrying) -> Text:
    return Text(f"↻ {event.step_id} attempt {event.attempt} failed: {event.error}; retrying in {event.wait_s:.1f}s",
                style="yellow")


def summary_table(records: list[StepRecord], totals: Any) -> Table:
    """Every top-level step's status, time, tokens and cost, with a totals row.

    Fan-out items, loop iterations and sub-pipeline steps are folded into their step's row (`120
    items, 2 failed`); their tokens and cost are summed into it unless the step's record carries
    its own (see nesting.rolled_up).
    """
    table = Table(title=None, show_edge=False, pad_edge=False)
    for column, justify in (("step", "left"), ("module", "left"), ("status", "left"), ("time", "right"),
                            ("tokens in", "right"), ("tokens out", "right"), ("cost", "right")):
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    top, children = nest(records, _record_key)
    for r in top:
        kids = children.get(r.id, ())
        sums = rolled_up(r, children, _record_id, record_sums)
        status = Text(r.status, style=STATUS_STYLE.get(r.status, ""))
        note = fold_text(r.details, [(kid.id, kid.status) for kid in kids])
        if note:
            status.append(f" · {note}")
        table.add_row(r.id, r.module, status, f"{r.duration_s:.2f}s" if r.duration_s is not None else "—",
                      f"{sums.input_tokens:,}", f"{sums.output_tokens:,}", sums.cost_text())
    cost = total_cost(totals.cost_usd, totals.cost_complete)
    table.add_section()
    if len(totals.by_model) > 1:
        for model, usage in totals.by_model.items():
            table.add_row(f"model {model}", "", f"{usage['calls']} calls", "", f"{usage['input_tokens']:,}",
                          f"{usage['output_tokens']:,}", money(usage["cost_usd"]))
    table.add_row("total", "", "", f"{totals.duration_s:.2f}s", f"{totals.input_tokens:,}", f"{totals.output_tokens:,}",
                  cost)
    return table


def _record_key(record: StepRecord) -> tuple[str, str | None]:
    return record.id, record.parent if record.parent is not None else parent_of(record.id)


def _record_id(record: StepRecord) -> str:
    return record.id
