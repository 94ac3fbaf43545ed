"""Every event of a run as one JSON line, written as it happens (`orchestrai run --events FILE`).

A line is `{"v": 1, "type": "step_finished", "run_id": "...", "at": 1764680000.123, ...fields}`; the
types and their fields are documented in docs/events.md, and docs/events.schema.json is their JSON
Schema. A step's end is one of three types by its status, with the same fields: `step_failed`
(failed), `step_skipped` (skipped), `step_finished` (completed, cached, resumed, interrupted), so a
consumer that only cares about failures subscribes to one name. The names are event_names.py's,
which the webhooks' `events:` use too; RunDrained (after the run, the log's bookkeeping) is not
streamed. Records inside a step (fan-out items `findings[3]`, loop iterations `refine#2/draft`,
sub-pipeline and agent steps `research/plan`) carry `parent`.

Each line is encoded with orjson and passed through the run's redactor (`RunStarted.redact`, after
the caller's own) as text, so no field can carry a key out. A file gets each line with one
`os.write` loop (the OS has it even if the process is killed the next instant); a text stream is
flushed after each line; a callable receives each line as a dict. The hook declares `events`, so the
engine builds no `StepToken` for it unless tokens were asked for.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import orjson

from ..api import (
    CallFinished,
    Event,
    FanoutStarted,
    LoopIteration,
    Notice,
    RateLimitWaited,
    RunFinished,
    RunStarted,
    StepEnded,
    StepRecord,
    StepRetrying,
    StepStarted,
    StepToken,
    ToolCalled,
)
from ..api.events import chained
from ..event_names import event_name
from .nesting import parent_of

VERSION = 1
MAX_TOOL_RESULT = 2000  # characters of a tool's result kept in a tool_called line
EVENTS: frozenset[type] = frozenset({RunStarted, RunFinished, StepStarted, StepEnded, StepRetrying, RateLimitWaited,
                                     CallFinished, Notice, FanoutStarted, LoopIteration, ToolCalled})

Target = str | Path | IO[str] | Callable[[dict[str, Any]], object]


class EventStream:
    """A hook writing each event as a JSON line to a file path, a text stream, or a callable (dicts).

    `tokens`: also `step_token` lines (the run streams only with `RunOptions.stream`); `outputs`: each
    finished step's output in its line (by default outputs stay in the memory log). A path is created
    (truncated) when the hook is made, so a bad path fails before the run; `close()` closes it.
    """

    def __init__(self, target: Target, *, tokens: bool = False, outputs: bool = False,
                 redact: Callable[[str], str] | None = None) -> None:
        self.events = EVENTS | {StepToken} if tokens else EVENTS
        self.outputs = outputs
        self._caller_redact = redact
        self._redact: Callable[[str], str] = redact or (lambda text: text)
        self._run_id: str | None = None
        self._started: set[str] = set()  # records with a step_started line in this run
        self._modules: dict[str, str] = {}  # top-level step id -> module, from RunStarted
        self._fd: int | None = None
        self._stream: IO[str] | None = None
        self._callback: Callable[[dict[str, Any]], object] | None = None
        if isinstance(target, str | Path):
            self._fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
        elif callable(target):
            self._callback = target
        else:
            self._stream = target

    def __enter__(self) -> EventStream:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def on_event(self, event: Event) -> None:
        if isinstance(event, RunStarted):
            self._run_id = event.run_id
            self._redact = chained(self._caller_redact, event.redact)
            self._started = set()
            self._modules = {step_id: modules[0] for step_id, modules in zip(event.step_ids, event.step_modules,
                                                                             strict=False)}
        found = line_of(event, self.outputs)
        if found is None:
            return
        kind, at, fields = found
        step_id = fields.get("step_id")
        if step_id is not None and (kind != "step_skipped" or fields["parent"] is not None):
            self._ensure_started(step_id if kind != "step_skipped" else fields["parent"], event, kind == "step_started")
        self.emit({"v": VERSION, "type": kind, "run_id": self._run_id, "at": at, **fields})

    def _ensure_started(self, step_id: str, event: Event, starting: bool) -> None:
        """Every record that runs gets one step_started before anything else about it, its parent's first.

        The engine announces a fan-out or loop by FanoutStarted/LoopIteration, a sub-pipeline by its
        children, and a resumed step or a foreach that could not resolve its list only by its end: the
        stream writes their start itself (`inferred: true`), so a consumer can pair starts and ends."""
        if step_id in self._started:
            return
        self._started.add(step_id)
        parent = parent_of(step_id)
        if parent is not None:
            self._ensure_started(parent, event, False)
        if starting:
            return  # the event itself is the start
        record = event.record if isinstance(event, StepEnded) and event.record.id == step_id else None
        module = record.module if record is not None else self._modules.get(step_id)
        if module is None and isinstance(event, LoopIteration) and event.step_id == step_id:
            module = "<loop>"
        at = record.started_at if record is not None and record.started_at else time.time()
        self.emit({"v": VERSION, "type": "step_started", "run_id": self._run_id, "at": at, "step_id": step_id,
                   "module": module, "parent": parent, "inferred": True})

    def emit(self, entry: dict[str, Any]) -> None:
        """Write one entry (redacted) where this stream goes."""
        raw = _json(entry)
        text = self._redact(raw)
        if self._callback is not None:
            self._callback(entry if text == raw else orjson.loads(text))
        elif self._fd is not None:
            data = (text + "\n").encode()
            while data:  # os.write may write less than asked (a pipe, a signal)
                data = data[os.write(self._fd, data):]
        elif self._stream is not None:
            self._stream.write(text + "\n")
            self._stream.flush()


def line_of(event: Event, outputs: bool = False) -> tuple[str, float, dict[str, Any]] | None:
    """(type, unix time, fields) of one event; None for an event type this version does not write."""
    name = event_name(event)
    found = _fields(event, outputs) if name is not None else None
    return None if found is None or name is None else (name, *found)


def _fields(event: Event, outputs: bool) -> tuple[float, dict[str, Any]] | None:
    if isinstance(event, StepStarted):
        return event.at, {"step_id": event.step_id, "module": event.module,
                                          "parent": parent_of(event.step_id)}
    if isinstance(event, StepEnded):
        return _step_end(event.record, outputs)
    if isinstance(event, CallFinished):
        return time.time(), {
            **_about(event.step_id), "provider": event.provider, "model": event.model,
            "input_tokens": event.usage.input_tokens, "output_tokens": event.usage.output_tokens,
            "cost_usd": event.cost_usd, "latency_s": round(event.latency_s, 4), "cached": event.cached}
    if isinstance(event, StepRetrying):
        return time.time(), {**_about(event.step_id), "attempt": event.attempt,
                                              "error": event.error, "wait_s": round(event.wait_s, 3)}
    if isinstance(event, RateLimitWaited):
        return time.time(), {**_about(event.step_id), "provider": event.provider,
                                                  "model": event.model, "wait_s": round(event.wait_s, 3)}
    if isinstance(event, ToolCalled):
        return time.time(), {
            **_about(event.step_id), "name": event.name, "arguments": event.arguments,
            "result": _truncated(event.result), "error": event.error, "refused": event.refused,
            "duration_s": round(event.duration_s, 4)}
    return _run_line(event)


def _run_line(event: Event) -> tuple[float, dict[str, Any]] | None:
    if isinstance(event, RunStarted):
        return event.started_at, {
            "pipeline": event.pipeline, "pipeline_path": event.pipeline_path, "steps": list(event.step_ids),
            "edges": [list(edge) for edge in event.edges], "resumed_from": event.resumed_from,
            "dry_run": event.dry_run, "versions": event.versions}
    if isinstance(event, RunFinished):
        totals = event.totals
        counts: dict[str, int] = {}
        for record in event.records:
            counts[record.status] = counts.get(record.status, 0) + 1
        return event.finished_at, {
            "status": event.status, "message": event.message, "steps": counts,
            "totals": {"input_tokens": totals.input_tokens, "output_tokens": totals.output_tokens,
                       "cost_usd": totals.cost_usd, "cost_complete": totals.cost_complete,
                       "duration_s": round(totals.duration_s, 4), "cached_steps": totals.cached_steps,
                       "resumed_steps": totals.resumed_steps, "by_model": totals.by_model}}
    if isinstance(event, Notice):
        return time.time(), {"text": event.text}
    if isinstance(event, FanoutStarted):
        return time.time(), {**_about(event.step_id), "total": event.total}
    if isinstance(event, LoopIteration):
        return time.time(), {**_about(event.step_id), "iteration": event.iteration,
                                               "max_iterations": event.max_iterations}
    if isinstance(event, StepToken):
        return time.time(), {**_about(event.step_id), "text": event.text}
    return None


def _about(step_id: str) -> dict[str, Any]:
    return {"step_id": step_id, "parent": parent_of(step_id)}


def _step_end(record: StepRecord, outputs: bool) -> tuple[float, dict[str, Any]]:
    status = record.status
    duration = record.duration_s
    fields = {
        "step_id": record.id, "module": record.module, "parent": record.parent, "status": status,
        "duration_s": round(duration, 4) if duration is not None else None, "provider": record.provider,
        "model": record.model, "input_tokens": record.usage.input_tokens,
        "output_tokens": record.usage.output_tokens, "cost_usd": record.cost_usd, "calls": record.calls,
        "cache_hits": record.cache_hits, "attempts": len(record.attempts), "error": record.error,
    }
    if outputs:
        fields["output"] = record.output
    return record.finished_at or time.time(), fields


def _truncated(value: Any) -> Any:
    """A tool's result as it is when short; its first MAX_TOOL_RESULT characters (as text) when long."""
    if value is None or isinstance(value, bool | int | float):
        return value
    text = value if isinstance(value, str) else _json(value)
    if len(text) <= MAX_TOOL_RESULT:
        return value
    return text[:MAX_TOOL_RESULT] + f"… ({len(text) - MAX_TOOL_RESULT} more characters)"


def _json(value: Any) -> str:
    """Compact JSON; what JSON has no type for is written as its str() (as the memory log does)."""
    return orjson.dumps(value, default=str, option=orjson.OPT_NON_STR_KEYS).decode()
