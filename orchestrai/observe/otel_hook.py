"""OpenTelemetry hook: each run as a trace of GenAI spans, sent over OTLP (the `otel` extra).

Why it is written this way:
- opentelemetry-sdk is an optional extra, imported in the constructor (MissingExtraError without
  it); the engine never imports this module. The hook owns its TracerProvider and never sets the
  global one, so it neither takes over nor is taken over by an application's own tracing.
- The tree (what nests under what, and each span's times) comes from observe/spans.py, shared with
  the wandb hook; here it only gets GenAI semantic-convention names and attributes. Spans are
  created with the events' own times, as each top-level step ends: a provider call is over before
  its event arrives.
- A collector that is down or slow must not fail or slow a run: spans go through a
  BatchSpanProcessor (its own thread) and the exporter has a short timeout. The last spans are
  flushed in the runner's drain after RunFinished (a DrainsAsync hook, beside the webhooks), in a
  thread and for at most `flush_timeout_s` (the SDK's force_flush ignores its timeout). The drain
  hands the log the trace id and whether it was delivered, and, when it was not, one notice. The
  SDK's own log lines about failed exports are kept from stderr (only those logged while our
  exporter runs, so an application's other exporters still log).
- Every string goes through the run's redactor (RunStarted.redact), after `redact` if given.
  Message contents, outputs and tool arguments/results are recorded only with capture_content.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import threading
from collections.abc import Callable, Sequence
from typing import Any, cast

from ..api import Drained, Event, RunFinished, RunStarted, StepRecord
from ..api.events import chained, unredacted
from ..errors import MissingExtraError
from ..otelconfig import OtelSettings
from .spans import TRACE_EVENTS, SpanNode, TraceCollector

EXPORT_TIMEOUT_S = 3.0  # per export, retries included (the SDK's default is 10 s)
FLUSH_TIMEOUT_S = 5.0  # how long the end of a run waits for its last spans
FAILED_RUN = ("failed", "budget_exceeded", "interrupted")


def _ns(seconds: float) -> int:
    return int(seconds * 1e9)


class OtelHook:
    """A hook that sends each run as an OpenTelemetry trace (GenAI semantic conventions)."""

    events = frozenset({RunStarted, RunFinished, *TRACE_EVENTS})

    def __init__(self, settings: OtelSettings | None = None, *, exporter: Any = None,
                 redact: Callable[[str], str] | None = None, flush_timeout_s: float = FLUSH_TIMEOUT_S) -> None:
        try:
            import opentelemetry.sdk.trace  # noqa: F401 - the extra's presence, checked up front
        except ImportError as exc:
            raise MissingExtraError("OpenTelemetry is not installed", hint='pip install "orchestrai[otel]"') from exc
        from .. import __version__

        self.settings = settings or OtelSettings()
        self.provider, self._exporter = _pipeline(self.settings, exporter)
        self._tracer = self.provider.get_tracer("orchestrai", __version__)
        self.flush_timeout_s = flush_timeout_s
        self.drain_timeout_s = flush_timeout_s + 1.0  # the runner's bound on drain(); ours comes first
        self._finished: tuple[str, int] | None = None  # (run id, trace id) of the run waiting for its drain
        self._caller_redact = redact
        self._redact: Callable[[str], str] = redact or unredacted
        self._collector = TraceCollector()
        self._root: Any = None
        self._root_context: Any = None
        self._provider_types: dict[str, str] = {}

    def on_event(self, event: Event) -> None:
        if isinstance(event, RunStarted):
            self._start(event)
        elif self._root is None:
            return
        elif isinstance(event, RunFinished):
            self._finish(event)
        else:
            for node in self._collector.add(event):
                self._emit(node, self._root_context)

    def _start(self, event: RunStarted) -> None:
        from opentelemetry import trace
        from opentelemetry.trace import SpanKind

        self._redact = chained(self._caller_redact, event.redact)
        self._collector = TraceCollector()
        providers = event.config.get("providers") or {}
        self._provider_types = {name: str(p.get("type") or name) for name, p in providers.items()
                                if isinstance(p, dict)}
        name = self._clean(event.pipeline)
        self._root = self._tracer.start_span(
            f"invoke_workflow {name}", kind=SpanKind.INTERNAL, start_time=_ns(event.started_at),
            attributes=_attrs({"gen_ai.operation.name": "invoke_workflow", "gen_ai.workflow.name": name,
                               "gen_ai.agent.name": name, "orchestrai.run.id": event.run_id,
                               "orchestrai.pipeline.path": self._clean(event.pipeline_path),
                               "orchestrai.resumed_from": event.resumed_from, "orchestrai.dry_run": event.dry_run}))
        self._root_context = trace.set_span_in_context(self._root)

    def _finish(self, event: RunFinished) -> None:
        from opentelemetry.trace import Status, StatusCode

        for node in self._collector.finish(event):
            self._emit(node, self._root_context)
        root, self._root = self._root, None
        totals = event.totals
        root.set_attributes(_attrs({"orchestrai.run.status": event.status,
                                    "gen_ai.usage.input_tokens": totals.input_tokens,
                                    "gen_ai.usage.output_tokens": totals.output_tokens,
                                    "orchestrai.cost_usd": totals.cost_usd,
                                    "orchestrai.cost_complete": totals.cost_complete}))
        if event.status in FAILED_RUN:
            root.set_attribute("error.type", event.status)
            root.set_status(Status(StatusCode.ERROR, self._clean(event.message or event.status)))
        root.end(end_time=_ns(event.finished_at))
        self._finished = (event.run_id, root.get_span_context().trace_id)

    async def drain(self) -> Drained | None:
        """After RunFinished: the run's last spans sent (at most flush_timeout_s); for the log the trace id
        and whether it was delivered, and a notice when it was not."""
        if self._finished is None:
            return None
        (run_id, trace_id), self._finished = self._finished, None
        flushed = await asyncio.to_thread(_bounded, self.provider.force_flush, self.flush_timeout_s)
        failure = self._exporter.failed.pop(trace_id, None)
        if failure is None and not flushed:
            failure = f"no answer within {self.flush_timeout_s:g} s"
        entry: dict[str, Any] = {"trace_id": format(trace_id, "032x"),
                                 "endpoint": self._clean(self.settings.traces_endpoint), "delivered": failure is None}
        if failure is None:
            return Drained(log={"otel": entry})
        entry["error"] = self._clean(failure)
        where = self.settings.traces_endpoint or "the OTEL_EXPORTER_OTLP endpoint"
        return Drained(log={"otel": entry}, notices=(self._clean(
            f"OpenTelemetry: the trace of run {run_id} was not delivered to {where}: {failure}"),))

    def _emit(self, node: SpanNode, parent: Any) -> None:
        from opentelemetry import trace
        from opentelemetry.trace import Status, StatusCode

        name, kind, attributes = self._describe(node)
        span = self._tracer.start_span(self._clean(name), context=parent, kind=kind, start_time=_ns(node.start),
                                       attributes=_attrs({k: self._clean(v) for k, v in attributes.items()}))
        for event in node.events:
            span.add_event(event.name, _attrs({k: self._clean(v) for k, v in event.attributes.items()}),
                           timestamp=_ns(event.at))
        if node.error is not None:
            message = self._clean(node.error)
            span.set_attribute("error.type", node.error_type or "_OTHER")
            span.add_event("exception", {"exception.type": node.error_type or "_OTHER", "exception.message": message},
                           timestamp=_ns(node.end))
            span.set_status(Status(StatusCode.ERROR, message.splitlines()[0] if message else None))
        context = trace.set_span_in_context(span)
        for child in node.children:
            self._emit(child, context)
        span.end(end_time=_ns(max(node.end, node.start)))

    def _describe(self, node: SpanNode) -> tuple[str, Any, dict[str, Any]]:
        from opentelemetry.trace import SpanKind

        record = node.record
        if node.kind == "iteration":
            return node.name, SpanKind.INTERNAL, {"orchestrai.loop.iteration": int(node.name.rpartition("#")[2])}
        if node.kind == "tool":
            return f"execute_tool {node.name}", SpanKind.INTERNAL, self._tool_attributes(node)
        if node.kind == "call":
            return f"chat {node.name}", SpanKind.CLIENT, self._call_attributes(node)
        assert record is not None
        attributes = self._step_attributes(record)
        if node.one_call:
            attributes.update(self._call_attributes(node))
            return f"chat {node.call.model if node.call else record.model}", SpanKind.CLIENT, attributes
        if any(child.kind in ("step", "iteration") for child in node.children):
            attributes.update({"gen_ai.operation.name": "invoke_workflow", "gen_ai.workflow.name": record.id})
            return f"invoke_workflow {record.id}", SpanKind.INTERNAL, attributes
        if record.provider is None:
            return f"step {record.id}", SpanKind.INTERNAL, attributes
        attributes.update({"gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": record.id,
                           "gen_ai.provider.name": self._provider_name(record.provider),
                           "gen_ai.request.model": record.model})
        return f"invoke_agent {record.id}", SpanKind.INTERNAL, attributes

    def _step_attributes(self, record: StepRecord) -> dict[str, Any]:
        attributes: dict[str, Any] = {
            "orchestrai.step.id": record.id, "orchestrai.step.module": record.module,
            "orchestrai.step.status": record.status, "orchestrai.step.parent": record.parent,
            "orchestrai.step.calls": record.calls, "orchestrai.step.cache_hits": record.cache_hits,
            "orchestrai.step.attempts": len(record.attempts),
            "gen_ai.usage.input_tokens": record.usage.input_tokens,
            "gen_ai.usage.output_tokens": record.usage.output_tokens, "orchestrai.cost_usd": record.cost_usd}
        if self.settings.capture_content:
            attributes.update(content_attributes(record))
        return attributes

    def _call_attributes(self, node: SpanNode) -> dict[str, Any]:
        record, call, attempt = node.record, node.call, node.attempt
        provider = call.provider if call is not None else (record.provider if record else None)
        attributes: dict[str, Any] = {"gen_ai.operation.name": "chat",
                                      "gen_ai.provider.name": self._provider_name(provider),
                                      "orchestrai.provider": provider}
        if call is not None:
            attributes.update({"gen_ai.request.model": record.model if record and record.model else call.model,
                               "gen_ai.response.model": call.model,
                               "gen_ai.usage.input_tokens": call.usage.input_tokens,
                               "gen_ai.usage.output_tokens": call.usage.output_tokens,
                               "orchestrai.cost_usd": call.cost_usd, "orchestrai.cached": call.cached,
                               "orchestrai.latency_s": call.latency_s})
        elif attempt is not None:
            attributes.update({"gen_ai.request.model": attempt.get("model"),
                               "orchestrai.attempt": attempt.get("attempt"),
                               "orchestrai.retry_wait_s": attempt.get("wait_s")})
        return attributes

    def _tool_attributes(self, node: SpanNode) -> dict[str, Any]:
        entry = node.tool or {}
        attributes: dict[str, Any] = {"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": node.name,
                                      "gen_ai.tool.call.id": entry.get("id"), "gen_ai.tool.type": "function",
                                      "orchestrai.tool.round": entry.get("round"),
                                      "orchestrai.tool.refused": bool(entry.get("refused"))}
        if self.settings.capture_content:
            result = node.tool_event.result if node.tool_event is not None else entry.get("result")
            attributes["gen_ai.tool.call.arguments"] = _json(entry.get("arguments"))
            if "error" not in entry:
                attributes["gen_ai.tool.call.result"] = _json(result)
        return attributes

    def _provider_name(self, provider: str | None) -> str | None:
        """gen_ai.provider.name: a configured provider's type (`openai` for any OpenAI-compatible server)."""
        return self._provider_types.get(provider, provider) if provider is not None else None

    def _clean(self, value: Any) -> Any:
        return self._redact(value) if isinstance(value, str) else value


def content_attributes(record: StepRecord) -> dict[str, str]:
    """gen_ai.system_instructions, gen_ai.input.messages and gen_ai.output.messages (JSON, the semconv's parts form)."""
    system = [{"type": "text", "content": m.get("content", "")} for m in record.messages if m.get("role") == "system"]
    inputs = [_message_parts(m) for m in record.messages if m.get("role") != "system"]
    attributes = {"gen_ai.input.messages": _json(inputs)} if inputs else {}
    if system:
        attributes["gen_ai.system_instructions"] = _json(system)
    if record.succeeded and record.output is not None:
        text = record.output if isinstance(record.output, str) else _json(record.output)
        answer = {"role": "assistant", "parts": [{"type": "text", "content": text}], "finish_reason": "stop"}
        attributes["gen_ai.output.messages"] = _json([answer])
    return attributes


def _message_parts(message: dict[str, Any]) -> dict[str, Any]:
    if message.get("role") == "tool":
        return {"role": "tool", "parts": [{"type": "tool_call_response", "id": message.get("tool_call_id"),
                                           "result": message.get("content", "")}]}
    parts: list[dict[str, Any]] = [{"type": "text", "content": message["content"]}] if message.get("content") else []
    parts += [{"type": "tool_call", "id": c.get("id"), "name": c.get("name"), "arguments": c.get("arguments")}
              for c in message.get("tool_calls") or []]
    return {"role": message.get("role"), "parts": parts}


def _json(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, default=str, ensure_ascii=False)


def _attrs(values: dict[str, Any]) -> dict[str, Any]:
    """Span attributes: None left out (OpenTelemetry takes str, bool, int, float and lists of them)."""
    return {key: value for key, value in values.items() if value is not None}


def _bounded(work: Callable[[], Any], timeout_s: float) -> bool:
    """Run `work` in a thread and wait at most timeout_s; whether it finished (and said True, or nothing)."""
    outcome: list[Any] = []
    thread = threading.Thread(target=lambda: outcome.append(work()), name="orchestrai-otel-flush", daemon=True)
    thread.start()
    thread.join(timeout_s)
    return bool(outcome) and outcome[0] is not False


_PIPELINES: dict[tuple[Any, ...], tuple[Any, _ReportingExporter]] = {}
_PIPELINES_LOCK = threading.Lock()


def _pipeline(settings: OtelSettings, exporter: Any) -> tuple[Any, _ReportingExporter]:
    """The TracerProvider (with its batch thread and exporter) for these settings: one per process, so a
    batch's rows, each a run with its own hook, share one thread and one connection. A caller's own
    exporter gets its own provider."""
    key = (settings.traces_endpoint, settings.protocol, tuple(sorted(settings.headers.items())),
           settings.service_name)
    with _PIPELINES_LOCK:
        if exporter is None and key in _PIPELINES:
            return _PIPELINES[key]
        made = _new_pipeline(settings, _ReportingExporter(exporter if exporter is not None else
                                                          make_exporter(settings)))
        if exporter is None:
            _PIPELINES[key] = made
        return made


def _new_pipeline(settings: OtelSettings, exporter: _ReportingExporter) -> tuple[Any, _ReportingExporter]:
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    from .. import __version__

    attributes: dict[str, str] = {"service.version": __version__}
    if settings.service_name or not os.environ.get("OTEL_SERVICE_NAME"):
        attributes["service.name"] = settings.service_name or "orchestrai"
    provider = TracerProvider(resource=Resource.create(attributes))
    provider.add_span_processor(BatchSpanProcessor(cast(Any, exporter)))  # a duck-typed SpanExporter
    return provider, exporter


def make_exporter(settings: OtelSettings) -> Any:
    """The OTLP span exporter for these settings (endpoint None: the SDK reads OTEL_EXPORTER_OTLP_* itself)."""
    timeout = None if _env_timeout() else EXPORT_TIMEOUT_S
    headers = dict(settings.headers) or None
    if settings.protocol == "grpc":
        try:
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter
        except ImportError as exc:
            raise MissingExtraError("the OTLP/gRPC exporter is not installed",
                                    hint='pip install "orchestrai[otel]"') from exc
        return GrpcExporter(endpoint=settings.traces_endpoint, headers=headers, timeout=timeout)
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    except ImportError as exc:
        raise MissingExtraError("the OTLP/HTTP exporter is not installed",
                                hint='pip install "orchestrai[otel]"') from exc
    return OTLPSpanExporter(endpoint=settings.traces_endpoint, headers=headers, timeout=timeout)


def _env_timeout() -> bool:
    return bool(os.environ.get("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT") or os.environ.get("OTEL_EXPORTER_OTLP_TIMEOUT"))


_EXPORTING = threading.local()  # set while one of our exporters runs in this thread


class _QuietWhileExporting(logging.Filter):
    """Keeps the SDK's export log lines (retries, failures) off stderr while our exporter runs; the first
    one is kept as the reason the hook reports in its own single line."""

    def filter(self, record: logging.LogRecord) -> bool:
        exporter = getattr(_EXPORTING, "exporter", None)
        if exporter is None:
            return True
        if exporter.reason is None:  # the first says why (later ones: "retrying", "giving up")
            exporter.reason = _short_reason(record.getMessage())
        return False


def _short_reason(message: str) -> str:
    """`Connection refused` out of urllib3's paragraph (`[Errno 111] ...`) or gRPC's (`Error details: ...: ...`),
    else the message's first line, cut short."""
    errno = re.search(r"\[Errno -?\d+\] ([^'\")\]]+)", message)
    if errno:
        return errno.group(1).strip()
    details = message.partition("Error details: ")[2].strip()
    if details:
        return details.rsplit(": ", 1)[-1][:300]
    return message.splitlines()[0][:300] if message else "unknown error"


_QUIET = _QuietWhileExporting()


def _quiet_exporter_loggers() -> None:
    """Put the filter on every opentelemetry exporter and processor logger that exists (filters apply
    only where a record is logged, not on its parents)."""
    names = [name for name in logging.Logger.manager.loggerDict
             if name.startswith(("opentelemetry.exporter", "opentelemetry.sdk._shared_internal",
                                 "opentelemetry.sdk.trace"))]
    for name in names:
        logger = logging.getLogger(name)
        if _QUIET not in logger.filters:
            logger.addFilter(_QUIET)


class _ReportingExporter:
    """Wraps the real exporter: notes which traces a failed export held, and why (never raises into the
    SDK's batch thread). Runs share it, so failures are kept per trace, for each run's drain."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.failed: dict[int, str] = {}  # trace id -> why its spans were not delivered
        self.reason: str | None = None
        _quiet_exporter_loggers()

    def export(self, spans: Sequence[Any]) -> Any:
        from opentelemetry.sdk.trace.export import SpanExportResult

        _EXPORTING.exporter, self.reason = self, None
        try:
            result = self.inner.export(spans)
        except Exception as exc:  # noqa: BLE001 - an exporter bug must not reach the batch thread's traceback
            result, self.reason = SpanExportResult.FAILURE, f"{type(exc).__name__}: {exc}"
        finally:
            _EXPORTING.exporter = None
        if result != SpanExportResult.SUCCESS:
            for span in spans:
                self.failed.setdefault(span.context.trace_id, self.reason or "the export failed")
        return result

    def shutdown(self) -> None:
        _EXPORTING.exporter = self
        try:
            self.inner.shutdown()
        except Exception:  # noqa: BLE001 - shutting down is best effort
            pass
        finally:
            _EXPORTING.exporter = None

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return bool(self.inner.force_flush(timeout_millis)) if hasattr(self.inner, "force_flush") else True
