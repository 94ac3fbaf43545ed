"""Signed webhooks (Standard Webhooks): the run's events POSTed to the configured receivers.

`on_event` runs in the event loop's thread and only builds the payload and starts a task: a slow or
failing receiver never slows a step. The runner awaits `drain()` after RunFinished (the `DrainsAsync`
seam), which waits for deliveries still going until their deadline, cancels what is left, and hands the
delivery records to the memory log under `"webhooks"` (never touching the run's `"status"`).

Payload: `{"type": <event name>, "timestamp": <ISO 8601 of the event>, "data": {...}}`, compact JSON,
redacted with the run's Redactor before it is signed. No prompt or message is ever sent; outputs only
with `include_outputs: true`.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from ..api import (
    Drained,
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
    ToolCalled,
)
from ..api.events import unredacted
from ..webhookconfig import Endpoint, shown_url
from .memory_log import to_json
from .webhook_delivery import Delivery, deliver

if TYPE_CHECKING:
    import httpx

MAX_IN_FLIGHT = 8  # POSTs at once per hook: a 10,000-item fan-out with step_finished queues, not floods
DRAIN_GRACE_S = 2.0  # on top of the longest deadline, before the runner cuts a drain off

EVENT_CLASSES: dict[str, type] = {
    "run_started": RunStarted, "run_finished": RunFinished, "step_started": StepStarted,
    "step_finished": StepEnded, "step_failed": StepEnded, "step_skipped": StepEnded,
    "step_retrying": StepRetrying, "rate_limit_waited": RateLimitWaited, "notice": Notice,
    "fanout_started": FanoutStarted, "loop_iteration": LoopIteration, "tool_called": ToolCalled,
}
_SIMPLE_NAMES = {cls: name for name, cls in EVENT_CLASSES.items() if cls is not StepEnded}


def event_name(event: Event) -> str | None:
    """The snake_case type of an event (a StepEnded by its status), as `events:` names it."""
    if isinstance(event, StepEnded):
        status = event.record.status
        return "step_failed" if status == "failed" else "step_skipped" if status == "skipped" else "step_finished"
    return _SIMPLE_NAMES.get(type(event))


def iso(timestamp: float | None) -> str | None:
    if timestamp is None:
        return None
    return datetime.fromtimestamp(timestamp, timezone.utc).isoformat(timespec="milliseconds")


class Webhooks:
    """A hook delivering the events each endpoint subscribed to; `drain()` reports what happened."""

    def __init__(self, endpoints: list[Endpoint]) -> None:
        self.endpoints = list(endpoints)
        wanted = {name for endpoint in self.endpoints for name in endpoint.events}
        # RunStarted always: it carries the loop, the redactor and the run's identity.
        self.events = frozenset({RunStarted, *(EVENT_CLASSES[name] for name in wanted if name in EVENT_CLASSES)})
        self.drain_timeout_s = max((e.deadline_s for e in self.endpoints), default=0.0) + DRAIN_GRACE_S
        self.deliveries: list[Delivery] = []
        self._redact: Callable[[str], str] = unredacted
        self._run: dict[str, Any] = {}
        self._finals: frozenset[str] = frozenset()
        self._tasks: dict[asyncio.Task[None], tuple[Delivery, float]] = {}  # -> (record, deadline)
        self._gone: set[int] = set()  # endpoints that answered 410 Gone
        self._client: httpx.AsyncClient | None = None
        self._slots: asyncio.Semaphore | None = None

    def on_event(self, event: Event) -> None:
        if isinstance(event, RunStarted):
            self._start(event)
        name = event_name(event)
        targets = [(index, e) for index, e in enumerate(self.endpoints) if name in e.events]
        if name is None or not targets:
            return
        timestamp = iso(_event_time(event))
        bodies: dict[bool, bytes] = {}  # by include_outputs: built once for all endpoints alike
        for index, endpoint in targets:
            if endpoint.include_outputs not in bodies:
                data = {**self._run, **event_data(event, endpoint.include_outputs, self._finals)}
                bodies[endpoint.include_outputs] = self._redact(
                    to_json({"type": name, "timestamp": timestamp, "data": data})).encode()
            self._queue(index, endpoint, name, bodies[endpoint.include_outputs])

    def _start(self, event: RunStarted) -> None:
        self._redact = event.redact
        self._run = {"run_id": event.run_id, "pipeline": event.pipeline}
        producers = {producer for producer, _ in event.edges}
        self._finals = frozenset(step_id for step_id in event.step_ids if step_id not in producers)
        self._slots = asyncio.Semaphore(MAX_IN_FLIGHT)

    def _queue(self, index: int, endpoint: Endpoint, name: str, body: bytes) -> None:
        loop = asyncio.get_running_loop()
        delivery = Delivery(name, self._redact(shown_url(endpoint.url)), f"msg_{uuid.uuid4().hex}")
        self.deliveries.append(delivery)
        if index in self._gone:
            delivery.last_error = "not sent: the receiver answered 410 Gone earlier in this run"
            return
        deadline = loop.time() + endpoint.deadline_s
        task = loop.create_task(self._deliver(index, endpoint, body, delivery, deadline))
        self._tasks[task] = (delivery, deadline)
        task.add_done_callback(self._tasks.pop)

    async def _deliver(self, index: int, endpoint: Endpoint, body: bytes, delivery: Delivery, deadline: float) -> None:
        assert self._slots is not None
        async with self._slots:
            if index in self._gone:
                delivery.last_error = "not sent: the receiver answered 410 Gone earlier in this run"
                return
            await deliver(self._http(), endpoint, body, delivery, deadline=deadline, redact=self._redact)
        if delivery.gone:
            self._gone.add(index)

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            import httpx  # only a run with webhooks pays for the import

            # No redirects: the spec counts a 3xx as a failure (the URL should be updated instead).
            self._client = httpx.AsyncClient(follow_redirects=False)
        return self._client

    async def drain(self) -> Drained | None:
        """Wait for deliveries still going (each until its own deadline), then the records for the log."""
        try:
            await self._wait()
        finally:
            left = list(self._tasks)
            for task in left:
                task.cancel()
            if left:  # let them unwind (their attempts' sockets) before the client closes
                await asyncio.gather(*left, return_exceptions=True)
            if self._client is not None:
                client, self._client = self._client, None
                await client.aclose()
        if not self.deliveries:
            return None
        return Drained(log={"webhooks": [d.as_json() for d in self.deliveries]}, notices=self._notices())

    async def _wait(self) -> None:
        if not self._tasks:
            return
        loop = asyncio.get_running_loop()
        latest = max(deadline for _, deadline in self._tasks.values())
        # A delivery stops on its own by its deadline (its attempts' timeouts are cut to what is left);
        # the small grace lets the last attempt's record land before anything is cancelled.
        done, pending = await asyncio.wait(list(self._tasks), timeout=max(0.0, latest - loop.time()) + 0.5)
        for task in pending:
            delivery, _ = self._tasks[task]
            delivery.last_error = f"{delivery.last_error or 'not delivered'}; cut off when the run stopped waiting"
        del done

    def _notices(self) -> tuple[str, ...]:
        failed = [d for d in self.deliveries if not d.delivered]
        if not failed:
            return ()
        shown = "; ".join(f"{d.event} to {d.url}: {d.last_error or 'not delivered'}" for d in failed[:3])
        more = f" and {len(failed) - 3} more" if len(failed) > 3 else ""
        return (self._redact(f"webhooks: {len(failed)} of {len(self.deliveries)} deliveries failed ({shown}{more}); "
                             "each attempt is in the run's log under \"webhooks\""),)


def _event_time(event: Event) -> float | None:
    if isinstance(event, RunStarted):
        return event.started_at
    if isinstance(event, RunFinished):
        return event.finished_at
    if isinstance(event, StepEnded) and event.record.finished_at is not None:
        return event.record.finished_at
    if isinstance(event, StepStarted):
        return event.at
    return datetime.now(timezone.utc).timestamp()


def event_data(event: Event, include_outputs: bool, finals: frozenset[str]) -> dict[str, Any]:
    """The payload's `data` for one event (no prompts or messages; outputs only when asked for)."""
    if isinstance(event, RunStarted):
        return {"pipeline_path": event.pipeline_path, "step_ids": list(event.step_ids),
                "started_at": iso(event.started_at), "resumed_from": event.resumed_from, "dry_run": event.dry_run}
    if isinstance(event, RunFinished):
        return run_finished_data(event, include_outputs, finals)
    if isinstance(event, StepEnded):
        return step_data(event.record, include_outputs)
    if isinstance(event, StepStarted):
        return {"step_id": event.step_id, "module": event.module, "started_at": iso(event.at)}
    if isinstance(event, ToolCalled):
        extra = {"arguments": event.arguments, "result": event.result} if include_outputs else {}
        return {"step_id": event.step_id, "tool": event.name, "error": event.error,
                "duration_s": round(event.duration_s, 4), "refused": event.refused, **extra}
    if isinstance(event, Notice):
        return {"text": event.text}
    fields = getattr(event, "__dataclass_fields__", {})  # StepRetrying, RateLimitWaited, FanoutStarted, LoopIteration
    return {name: getattr(event, name) for name in fields}


def run_finished_data(event: RunFinished, include_outputs: bool, finals: frozenset[str]) -> dict[str, Any]:
    totals = event.totals
    top = [record for record in event.records if record.parent is None]
    counts: dict[str, int] = {}
    for record in top:
        counts[record.status] = counts.get(record.status, 0) + 1
    data: dict[str, Any] = {
        "status": event.status, "message": event.message, "finished_at": iso(event.finished_at),
        "totals": {"input_tokens": totals.input_tokens, "output_tokens": totals.output_tokens,
                   "cost_usd": totals.cost_usd, "cost_complete": totals.cost_complete,
                   "duration_s": totals.duration_s, "cached_steps": totals.cached_steps,
                   "resumed_steps": totals.resumed_steps},
        "steps": counts,
        "failed_steps": [{"id": r.id, "error": r.error} for r in event.records if r.status == "failed"][:20],
    }
    if include_outputs:
        data["outputs"] = {r.output_name: r.output for r in top if r.id in finals and r.succeeded}
    return data


def step_data(record: StepRecord, include_outputs: bool) -> dict[str, Any]:
    data: dict[str, Any] = {
        "step_id": record.id, "module": record.module, "status": record.status, "parent": record.parent,
        "error": record.error, "started_at": iso(record.started_at), "finished_at": iso(record.finished_at),
        "duration_s": round(record.duration_s, 4) if record.duration_s is not None else None,
        "provider": record.provider, "model": record.model, "cost_usd": record.cost_usd,
        "usage": {"input_tokens": record.usage.input_tokens, "output_tokens": record.usage.output_tokens},
        "attempts": len(record.attempts),
    }
    if include_outputs:
        data["output"] = record.output
    return data
