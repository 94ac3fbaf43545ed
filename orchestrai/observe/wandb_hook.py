"""Weights & Biases hook: one wandb run per orchestrai run, with a trace, a "steps" table and totals.

Why it is written this way:
- wandb is an optional extra and takes over a second to import, so it is imported in the
  constructor, never when this module is imported; without it the user gets MissingExtraError.
- `reinit="create_new"` lets several orchestrai runs in one process (tests, notebooks, library use)
  each own a wandb run; we always log through our own `run` handle, never the `wandb.run` global.
- The trace uses `wandb.sdk.data_types.trace_tree` (still present in wandb 0.31). Its `Trace.log()`
  helper logs to `wandb.run`, which "create_new" runs do not set, so we build the `Span` tree
  and log `WBTraceTree(root)` with `run.log` ourselves. The tree is the OpenTelemetry hook's
  (observe/spans.py): the run, its steps, and under a step its fan-out items, loop iterations,
  sub-pipeline steps, provider calls (failed attempts too) and tool calls.
- Steps are only collected while the run goes; everything is logged once on RunFinished. A run has
  few steps, and one history row holding the trace and the table keeps the wandb run simple.
- Every string goes through the run's own redactor (RunStarted.redact), after `redact` if one is
  given, and values under credential-like keys are masked, although the config arrives already
  redacted. Console capture is off: it could not be redacted.
- A wandb failure must not break the run: the EventBus reports hook exceptions, and `finish()` is
  attempted even when logging fails.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, Literal

from ..api import Event, RunFinished, RunStarted, StepEnded, StepRecord
from ..api.events import chained
from ..errors import MissingExtraError
from .spans import TRACE_EVENTS, SpanNode, TraceCollector

WandbMode = Literal["online", "offline", "disabled"]

STEP_COLUMNS: list[str | int] = ["id", "module", "status", "provider", "model", "input_tokens", "output_tokens",
                                 "cost_usd", "duration_s", "error"]
_SECRET_KEY = re.compile(r"api[_-]?key|secret|password|authorization|bearer", re.IGNORECASE)


def _ms(timestamp: float | None) -> int | None:
    return int(timestamp * 1000) if timestamp is not None else None


class WandbHook:
    """A hook that mirrors a run into Weights & Biases."""

    events = frozenset({RunStarted, RunFinished, *TRACE_EVENTS})

    def __init__(self, project: str, entity: str | None = None, mode: WandbMode | None = None,
                 redact: Callable[[str], str] | None = None) -> None:
        try:
            import wandb
        except ImportError as exc:
            raise MissingExtraError("wandb is not installed", hint='pip install "orchestrai[wandb]"') from exc
        self._wandb = wandb
        self.project, self.entity, self.mode = project, entity, mode
        self._caller_redact = redact
        self._redact: Callable[[str], str] | None = redact
        self.run: Any = None
        self._started: RunStarted | None = None
        self._steps: dict[str, StepRecord] = {}
        self._collector = TraceCollector()
        self._nodes: list[SpanNode] = []

    def on_event(self, event: Event) -> None:
        if isinstance(event, RunStarted):
            self._start(event)
        elif self.run is None:
            return
        elif isinstance(event, RunFinished):
            self._finish(event)
        else:
            if isinstance(event, StepEnded):
                self._steps[event.record.id] = event.record
            self._nodes += self._collector.add(event)

    def _start(self, event: RunStarted) -> None:
        self._started, self._steps, self._nodes, self._collector = event, {}, [], TraceCollector()
        self._redact = chained(self._caller_redact, event.redact)
        config = {"pipeline": event.pipeline, "run_id": event.run_id, "orchestrai_config": event.config}
        self.run = self._wandb.init(project=self.project, entity=self.entity, mode=self.mode,
                                    name=self._clean(f"{event.pipeline}-{event.run_id}"), config=self._clean(config),
                                    reinit="create_new", settings=self._wandb.Settings(console="off"))

    def _finish(self, event: RunFinished) -> None:
        from wandb.sdk.data_types.trace_tree import WBTraceTree

        run, self.run = self.run, None
        try:
            for record in event.records:  # steps that never reached StepEnded still belong in the trace
                self._steps.setdefault(record.id, record)
            self._nodes += self._collector.finish(event)
            steps = list(self._steps.values())
            table = self._wandb.Table(columns=STEP_COLUMNS, data=[self._clean(self._row(r)) for r in steps])
            run.log({"trace": WBTraceTree(self._root_span(event)), "steps": table})
            totals = event.totals
            run.summary.update({"status": event.status, "input_tokens": totals.input_tokens,
                                "output_tokens": totals.output_tokens, "cost_usd": totals.cost_usd,
                                "cost_complete": totals.cost_complete, "duration_s": totals.duration_s})
        finally:
            run.finish(exit_code=0 if event.status == "completed" else 1)

    def _root_span(self, event: RunFinished) -> Any:
        from wandb.sdk.data_types.trace_tree import Span, SpanKind, StatusCode

        assert self._started is not None
        root = Span(name=self._clean(self._started.pipeline), span_kind=SpanKind.CHAIN,
                    status_code=StatusCode.SUCCESS if event.status == "completed" else StatusCode.ERROR,
                    status_message=event.status, start_time_ms=_ms(self._started.started_at),
                    end_time_ms=_ms(event.finished_at),
                    attributes={"run_id": event.run_id, "input_tokens": event.totals.input_tokens,
                                "output_tokens": event.totals.output_tokens, "cost_usd": event.totals.cost_usd})
        for node in sorted(self._nodes, key=lambda n: n.start):
            root.add_child_span(self._span(node))
        return root

    def _span(self, node: SpanNode) -> Any:
        """One node of the shared tree (observe/spans.py) as a wandb Span, its children under it."""
        from wandb.sdk.data_types.trace_tree import Span, SpanKind, StatusCode

        kind, attributes, result = (self._step_parts(node) if node.kind == "step" else self._call_parts(node)
                                    if node.kind == "call" else self._tool_parts(node) if node.kind == "tool"
                                    else (SpanKind.CHAIN, {}, None))
        record = node.record
        status = node.error or (record.status if node.kind == "step" and record is not None else "ok")
        span = Span(name=self._clean(node.name), span_kind=kind,
                    status_code=StatusCode.ERROR if node.error else StatusCode.SUCCESS,
                    status_message=self._clean(status), start_time_ms=_ms(node.start), end_time_ms=_ms(node.end),
                    attributes=self._clean({k: v for k, v in attributes.items() if v is not None}),
                    results=[result] if result is not None else None)
        for child in node.children:
            span.add_child_span(self._span(child))
        return span

    def _step_parts(self, node: SpanNode) -> tuple[Any, dict[str, Any], Any]:
        """A step: LLM (its one call), AGENT (tools, several calls), CHAIN (items, iterations, sub-pipeline
        steps), TOOL (no model: start_module, a Python module)."""
        from wandb.sdk.data_types.trace_tree import Result, SpanKind

        record = node.record
        assert record is not None
        if node.one_call:
            kind = SpanKind.LLM
        elif any(child.kind in ("step", "iteration") for child in node.children):
            kind = SpanKind.CHAIN
        else:
            kind = SpanKind.AGENT if record.provider is not None else SpanKind.TOOL
        attributes: dict[str, Any] = {**{str(k): v for k, v in zip(STEP_COLUMNS, self._row(record), strict=True)},
                                      "calls": record.calls, "attempts": len(record.attempts), "parent": record.parent}
        result = Result(inputs=self._clean(dict(record.inputs)),
                        outputs=self._clean({record.output_name: record.output}))
        return kind, attributes, result

    def _call_parts(self, node: SpanNode) -> tuple[Any, dict[str, Any], Any]:
        """A provider call: its tokens and cost, or (a failed attempt) its number and error kind."""
        from wandb.sdk.data_types.trace_tree import SpanKind

        call, record = node.call, node.record
        attributes: dict[str, Any] = {"model": node.name, "provider": call.provider if call else
                                      record.provider if record else None}
        if call is not None:
            attributes.update(input_tokens=call.usage.input_tokens, output_tokens=call.usage.output_tokens,
                              cost_usd=call.cost_usd, cached=call.cached, latency_s=call.latency_s)
        else:
            attributes.update(attempt=(node.attempt or {}).get("attempt"), kind=node.error_type)
        return SpanKind.LLM, attributes, None

    def _tool_parts(self, node: SpanNode) -> tuple[Any, dict[str, Any], Any]:
        """A tool call: arguments in, the (whole) result or the error out."""
        from wandb.sdk.data_types.trace_tree import Result, SpanKind

        entry = node.tool or {}
        full = node.tool_event.result if node.tool_event is not None else entry.get("result")
        attributes = {"round": entry.get("round"), "refused": bool(entry.get("refused")),
                      "duration_s": entry.get("duration_s")}
        result = Result(inputs=self._clean({"arguments": entry.get("arguments")}),
                        outputs=self._clean({"error": node.error} if node.error else {"result": full}))
        return SpanKind.TOOL, attributes, result

    @staticmethod
    def _row(r: StepRecord) -> list[Any]:
        """One step as a table row, in STEP_COLUMNS order."""
        duration = round(r.duration_s, 4) if r.duration_s is not None else None
        return [r.id, r.module, r.status, r.provider, r.model, r.usage.input_tokens, r.usage.output_tokens,
                r.cost_usd, duration, r.error]

    def _clean(self, value: Any) -> Any:
        """Redact every string and mask credential-like keys, through dicts and lists."""
        if isinstance(value, str):
            return self._redact(value) if self._redact else value
        if isinstance(value, dict):
            return {k: "***" if _SECRET_KEY.search(str(k)) else self._clean(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [self._clean(v) for v in value]
        return value
