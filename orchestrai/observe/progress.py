"""Terminal output for a run (a subscriber): live progress on a TTY, one line per event otherwise."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.markup import escape
from rich.spinner import Spinner
from rich.table import Table
from rich.text import Text

from ..api import (
    CallFinished,
    Event,
    Notice,
    RunFinished,
    RunStarted,
    StepEnded,
    StepRecord,
    StepRetrying,
    StepStarted,
    StepToken,
)
from .costs import money, total_cost

STATUS_STYLE = {"completed": "green", "cached": "cyan", "resumed": "cyan", "failed": "red", "skipped": "yellow",
                "interrupted": "magenta"}
STATUS_MARK = {"completed": "✔", "cached": "✔", "resumed": "✔", "failed": "✖", "skipped": "↷", "interrupted": "■"}


class _Tally:
    """Live counters shared by both views: running steps with their tokens and cost, and totals."""

    def __init__(self) -> None:
        self.total = 0
        self.done = 0
        self.pipeline = ""
        self.running: dict[str, dict[str, Any]] = {}
        self.tokens = 0
        self.cost = 0.0
        self.priced = self.unpriced = False  # whether some call had a price, and some none

    def update(self, event: Event) -> None:
        if isinstance(event, RunStarted):
            self.pipeline, self.total = event.pipeline, len(event.step_ids)
        elif isinstance(event, StepStarted):
            self.running[event.step_id] = {"module": event.module, "since": time.monotonic(), "tokens": 0, "cost": 0.0}
        elif isinstance(event, CallFinished):
            tokens = event.usage.input_tokens + event.usage.output_tokens
            self.tokens += tokens
            self.cost += event.cost_usd or 0.0
            if event.cost_usd is None:
                self.unpriced = True
            else:
                self.priced = True
            if event.step_id in self.running:
                step = self.running[event.step_id]
                step["tokens"] += tokens
                step["cost"] = None if event.cost_usd is None or step["cost"] is None else step["cost"] + event.cost_usd
        elif isinstance(event, StepEnded):
            self.running.pop(event.record.id, None)
            self.done += 1

    def cost_text(self) -> str:
        """The cost so far: unknown (—) only once calls were made and none had a price."""
        return total_cost(self.cost if self.priced or not self.unpriced else None, not self.unpriced)


class LiveProgress:
    """A rich live view: one line per running step (spinner, elapsed, tokens, cost) and a header."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.tally = _Tally()
        self._spinners: dict[str, Spinner] = {}
        self._live: Live | None = None

    def on_event(self, event: Event) -> None:
        self.tally.update(event)
        if isinstance(event, RunStarted):
            self._live = Live(get_renderable=self._render, console=self.console, refresh_per_second=8, transient=True)
            self._live.start()
        elif isinstance(event, StepEnded):
            self._spinners.pop(event.record.id, None)
            self.console.print(step_line(event.record))
        elif isinstance(event, StepRetrying):
            self.console.print(retry_line(event))
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
        rows = []
        now = time.monotonic()
        for step_id, info in list(tally.running.items()):
            spinner = self._spinners.setdefault(step_id, Spinner("dots", style="cyan"))
            detail = Text(f" {step_id} ({info['module']})  {now - info['since']:.1f}s  "
                          f"{info['tokens']:,} tok  {money(info['cost'])}")
            table = Table.grid()
            table.add_row(spinner, detail)
            rows.append(table)
        return Group(header, *rows)


class PlainProgress:
    """One line per event, for CI logs and pipes; with --stream, tokens as they arrive."""

    def __init__(self, console: Console, *, stream: bool = False) -> None:
        self.console = console
        self.stream = stream
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
        if isinstance(event, RunStarted):
            self.console.print(f"run {event.run_id}: {escape(event.pipeline)} ({len(event.step_ids)} steps)")
        elif isinstance(event, StepStarted):
            self.console.print(f"▶ {escape(event.step_id)} started ({escape(event.module)})")
        elif isinstance(event, StepEnded):
            self.console.print(step_line(event.record))
        elif isinstance(event, StepRetrying):
            self.console.print(retry_line(event))
        elif isinstance(event, Notice):
            self.console.print(notice_line(event))

    def _end_stream_line(self) -> None:
        if self._streaming_step is not None:
            self.console.print()
            self._streaming_step = None


def step_line(record: StepRecord) -> Text:
    style = STATUS_STYLE.get(record.status, "")
    text = Text(f"{STATUS_MARK.get(record.status, '?')} {record.id} {record.status}", style=style)
    if record.status in ("completed", "cached"):
        text.append(f" in {record.duration_s or 0:.2f}s")
        if record.calls:
            text.append(f", {record.usage.input_tokens:,}→{record.usage.output_tokens:,} tokens, "
                        f"{money(record.cost_usd)}")
    elif record.error:
        lines = record.error.splitlines()
        text.append(": " + lines[0])
        if len(lines) > 1 and lines[1].lstrip().startswith("hint:"):
            text.append("\n  " + lines[1].strip(), style="dim")
    return text


def notice_line(event: Notice) -> Text:
    return Text(f"! {event.text}", style="yellow")


def retry_line(event: StepRetrying) -> Text:
    return Text(f"↻ {event.step_id} attempt {event.attempt} failed: {event.error}; retrying in {event.wait_s:.1f}s",
                style="yellow")


def summary_table(records: list[StepRecord], totals: Any) -> Table:
    """Every step's status, time, tokens and cost, with a totals row."""
    table = Table(title=None, show_edge=False, pad_edge=False)
    for column, justify in (("step", "left"), ("module", "left"), ("status", "left"), ("time", "right"),
                            ("tokens in", "right"), ("tokens out", "right"), ("cost", "right")):
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    for r in records:
        table.add_row(r.id, r.module, Text(r.status, style=STATUS_STYLE.get(r.status, "")),
                      f"{r.duration_s:.2f}s" if r.duration_s is not None else "—",
                      f"{r.usage.input_tokens:,}", f"{r.usage.output_tokens:,}", money(r.cost_usd) if r.calls else "")
    cost = total_cost(totals.cost_usd, totals.cost_complete)
    table.add_section()
    if len(totals.by_model) > 1:
        for model, usage in totals.by_model.items():
            table.add_row(f"model {model}", "", f"{usage['calls']} calls", "", f"{usage['input_tokens']:,}",
                          f"{usage['output_tokens']:,}", money(usage["cost_usd"]))
    table.add_row("total", "", "", f"{totals.duration_s:.2f}s", f"{totals.input_tokens:,}", f"{totals.output_tokens:,}",
                  cost)
    return table
