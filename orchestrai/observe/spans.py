"""A run as a tree of timed spans, for the tracing hooks (OpenTelemetry, wandb).

One place says what nests under what, so both traces have the same shape:
- a step's span holds its provider calls (each successful call, from CallFinished: it ends when
  the event arrives and started `latency_s` before; each failed attempt, from `record.attempts`:
  from its `started_at` to the StepRetrying that followed, or to the step's end), its tool calls
  (`details.tool_calls`, timed by their ToolCalled events) and its child records;
- child records nest by their ids and `parent` (nesting.py): fan-out items under their step, loop
  body steps under one span per iteration (`refine#2`) under the loop, sub-pipeline steps under
  their step, and the records of a module or pipeline called as a tool (`answer/analyst@0/...`)
  under that tool call's span (`@0` is the call's index in `details.tool_calls`);
- a step that made one provider call and nothing else *is* that call: its span carries the call
  (`merged_call`), and only failed attempts become children.

A top-level step's subtree is handed out when that step ends (its children have all ended by
then), so a tracer can send spans while the run goes; what never ended comes out at RunFinished.
Events arrive after the fact, so times are the events' own (unix seconds), never "now" at the
span's creation.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from ..api import CallFinished, Event, RateLimitWaited, RunFinished, StepEnded, StepRecord, StepRetrying, ToolCalled
from .nesting import iteration_of, nest, parent_of

SpanKind = Literal["step", "iteration", "call", "tool"]
_SPAWNED = re.compile(r"^(.+)@(\d+)$")  # `analyst@0`: the module or pipeline of tool call 0


@dataclass(frozen=True)
class SpanEvent:
    name: str
    at: float
    attributes: dict[str, Any]


@dataclass
class SpanNode:
    """One span: what it stands for (a record, a call, a failed attempt, a tool call), when, and its children."""

    kind: SpanKind
    name: str  # a step id, `refine#2`, a model, a tool name
    start: float
    end: float
    record: StepRecord | None = None  # kind step (and the step a call or tool belongs to)
    call: CallFinished | None = None  # kind call: a successful call; kind step: the step's one call
    attempt: dict[str, Any] | None = None  # kind call: a failed attempt (its record.attempts entry)
    tool: dict[str, Any] | None = None  # kind tool: its details.tool_calls entry
    tool_event: ToolCalled | None = None  # kind tool: the full result (the entry keeps an excerpt)
    error: str | None = None
    error_type: str | None = None
    # kind step: it stands for the step's one provider call (`chat {model}`); failed attempts are its children
    one_call: bool = False
    events: list[SpanEvent] = field(default_factory=list)
    children: list[SpanNode] = field(default_factory=list)


TRACE_EVENTS = frozenset({StepEnded, CallFinished, StepRetrying, RateLimitWaited, ToolCalled})


class TraceCollector:
    """Collects one run's events (`add`) and builds each top-level step's span tree when it ends."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._pending: dict[str, list[StepRecord]] = {}  # top-level id -> its ended descendants
        self._built: set[str] = set()
        self._calls: dict[str, list[tuple[float, CallFinished]]] = {}
        self._retries: dict[str, list[tuple[float, StepRetrying]]] = {}
        self._waits: dict[str, list[tuple[float, RateLimitWaited]]] = {}
        self._tools: dict[str, list[tuple[float, ToolCalled]]] = {}

    def add(self, event: Event) -> list[SpanNode]:
        """Take one event; the span trees it completes (a top-level step that ended), usually none."""
        if isinstance(event, StepEnded):
            record = event.record
            if record.parent is None:
                return self._build([*self._pending.pop(record.id, []), record])
            self._pending.setdefault(_top_of(record), []).append(record)
            return []
        now = self._clock()
        if isinstance(event, CallFinished):
            self._calls.setdefault(event.step_id, []).append((now, event))
        elif isinstance(event, StepRetrying):
            self._retries.setdefault(event.step_id, []).append((now, event))
        elif isinstance(event, RateLimitWaited):
            self._waits.setdefault(event.step_id, []).append((now, event))
        elif isinstance(event, ToolCalled):
            self._tools.setdefault(event.step_id, []).append((now, event))
        return []

    def finish(self, event: RunFinished) -> list[SpanNode]:
        """The trees of every record that has not been handed out (steps that never ended, a cut-short run)."""
        left = [record for record in event.records if record.id not in self._built]
        self._pending.clear()
        return self._build(left) if left else []

    def _build(self, records: list[StepRecord]) -> list[SpanNode]:
        top, children = nest(records, key=lambda r: (r.id, r.parent))
        nodes = [self._step(record, children) for record in top]
        self._built.update(record.id for record in records)
        return nodes

    def _step(self, record: StepRecord, children: dict[str, list[StepRecord]]) -> SpanNode:
        end = record.finished_at or record.started_at or self._clock()
        node = SpanNode("step", record.id, min(record.started_at or end, end), end, record=record)
        if record.status in ("failed", "interrupted"):
            node.error = record.error or record.status
            node.error_type = "interrupted" if record.status == "interrupted" else _last_kind(record)
        node.events = self._step_events(record.id)
        calls = self._calls.pop(record.id, [])
        attempts = self._failed_attempts(record, node)
        tools = self._tool_nodes(record, node)
        kids = [self._step(child, children) for child in children.get(record.id, [])]
        node.one_call = record.provider is not None and len(calls) <= 1 and not tools and not kids and (
            bool(calls) or bool(attempts))
        if node.one_call and calls:
            node.call = calls[0][1]  # the step is its one call; only its failed attempts are children
        else:
            attempts = [*(self._call_node(record, t, call) for t, call in calls), *attempts]
        node.children = sorted([*attempts, *tools, *self._placed(record, kids, tools)], key=lambda n: n.start)
        return node

    def _step_events(self, step_id: str) -> list[SpanEvent]:
        events = [SpanEvent("orchestrai.retry", t, {"attempt": e.attempt, "wait_s": e.wait_s, "error": e.error})
                  for t, e in self._retries.get(step_id, [])]
        events += [SpanEvent("orchestrai.rate_limit_wait", t, {"wait_s": e.wait_s, "provider": e.provider,
                                                                "model": e.model})
                   for t, e in self._waits.pop(step_id, [])]
        return sorted(events, key=lambda e: e.at)

    def _call_node(self, record: StepRecord, at: float, call: CallFinished) -> SpanNode:
        return SpanNode("call", call.model, at - call.latency_s, at, record=record, call=call)

    def _failed_attempts(self, record: StepRecord, step: SpanNode) -> list[SpanNode]:
        retries = list(self._retries.pop(record.id, []))
        if record.status == "resumed":  # its attempts were made by the earlier run, at its times
            return []
        nodes = []
        for entry in record.attempts:
            if "error" not in entry:
                continue
            start = float(entry.get("started_at") or step.start)
            # The StepRetrying this attempt caused: same attempt number, after it started.
            match = next((item for item in retries if item[1].attempt == entry.get("attempt") and item[0] >= start),
                         None)
            if match is not None:
                retries.remove(match)
            end = match[0] if match is not None else step.end
            nodes.append(SpanNode("call", str(entry.get("model") or record.model), start, max(start, end),
                                  record=record, attempt=entry, error=str(entry["error"]),
                                  error_type=str(entry.get("kind") or "_OTHER")))
        return nodes

    def _tool_nodes(self, record: StepRecord, step: SpanNode) -> list[SpanNode]:
        entries = record.details.get("tool_calls") or []
        events = list(self._tools.pop(record.id, []))
        nodes = []
        for entry in entries:
            if not isinstance(entry, dict):
                continue
            duration = float(entry.get("duration_s") or 0.0)
            match = next((item for item in events if item[1].name == entry.get("name")
                          and item[1].duration_s == entry.get("duration_s")
                          and item[1].arguments == entry.get("arguments")), None)
            if match is not None:
                events.remove(match)
            end = match[0] if match is not None else step.end
            error = entry.get("error")
            nodes.append(SpanNode("tool", str(entry.get("name")), end - duration, end, record=record, tool=entry,
                                  tool_event=match[1] if match else None, error=error,
                                  error_type=("refused" if entry.get("refused") else "tool_error") if error else None))
        return nodes

    def _placed(self, record: StepRecord, kids: list[SpanNode], tools: list[SpanNode]) -> list[SpanNode]:
        """Child records where they belong: under their tool call, their loop iteration, or the step itself."""
        placed: list[SpanNode] = []
        iterations: dict[int, SpanNode] = {}
        for kid in kids:
            rest = kid.name[len(record.id):] if kid.name.startswith(record.id) else ""
            head = rest[1:].split("/", 1)[0] if rest.startswith("/") else ""
            spawned = _SPAWNED.match(head)
            number = iteration_of(kid.name) if rest.startswith("#") else None
            if spawned and int(spawned.group(2)) < len(tools):
                tool = tools[int(spawned.group(2))]
                tool.children.append(kid)
                tool.start = min(tool.start, kid.start)
            elif number is not None:
                group = iterations.get(number)
                if group is None:
                    group = iterations[number] = SpanNode("iteration", f"{record.id}#{number}", kid.start, kid.end,
                                                          record=record)
                    placed.append(group)
                group.children.append(kid)
                group.start, group.end = min(group.start, kid.start), max(group.end, kid.end)
            else:
                placed.append(kid)
        return placed


def _top_of(record: StepRecord) -> str:
    """The top-level step a child record belongs to (its parent's parent ..., by id past its own parent)."""
    top, parent = record.id, record.parent
    while parent is not None:
        top, parent = parent, parent_of(parent)
    return top


def _last_kind(record: StepRecord) -> str:
    """error.type of a failed step: the kind of its last failed provider attempt, else `_OTHER`."""
    failed = [entry for entry in record.attempts if "error" in entry]
    return str(failed[-1].get("kind") or "_OTHER") if failed else "_OTHER"
