"""One webhook message, signed as the Standard Webhooks spec says, POSTed with retries; what happened to it.

Signing: `webhook-signature: v1,<base64 HMAC-SHA256(key, f"{webhook-id}.{webhook-timestamp}.{body}")>` with
the key decoded from the `whsec_<base64>` secret. The id stays the same across retries; the timestamp
(and so the signature) is each attempt's own, as the spec asks, so a receiver can refuse stale replays.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any

from ..webhookconfig import Endpoint

if TYPE_CHECKING:
    import httpx

BASE_DELAY_S = 0.5  # the first retry's wait; doubled each attempt, with jitter, at most MAX_DELAY_S
MAX_DELAY_S = 30.0
USER_AGENT = "orchestrai-webhooks/1"


def sign(key: bytes, message_id: str, timestamp: int, body: bytes) -> str:
    """The `webhook-signature` header value for one attempt."""
    mac = hmac.new(key, f"{message_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode()


def iso_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


@dataclass
class Delivery:
    """One message to one receiver, as the memory log records it (apart from the run's status)."""

    event: str
    url: str  # shown_url: no credentials, no query
    webhook_id: str
    attempts: list[dict[str, Any]] = field(default_factory=list)  # {"at", "status"} or {"at", "error"}
    delivered: bool = False
    last_error: str | None = None
    gone: bool = False  # the receiver answered 410 Gone: nothing more is sent to it in this run

    def as_json(self) -> dict[str, Any]:
        return {"event": self.event, "url": self.url, "webhook_id": self.webhook_id, "attempts": self.attempts,
                "delivered": self.delivered, "last_error": self.last_error}


@dataclass(frozen=True)
class _Outcome:
    status: int | None = None
    error: str | None = None
    retry: bool = False
    retry_after_s: float | None = None


async def deliver(client: httpx.AsyncClient, endpoint: Endpoint, body: bytes, delivery: Delivery, *,
                  deadline: float, redact: Callable[[str], str]) -> None:
    """Attempt until a 2xx, a final answer, `max_attempts`, or `deadline` (the loop's clock) comes first."""
    loop = asyncio.get_running_loop()
    for attempt in range(1, endpoint.max_attempts + 1):
        left = deadline - loop.time()
        if left <= 0:
            delivery.last_error = f"{delivery.last_error or 'not sent'}; the deadline ({endpoint.deadline_s:g}s) passed"
            return
        outcome = await _attempt(client, endpoint, body, delivery.webhook_id, min(endpoint.timeout_s, left))
        entry: dict[str, Any] = {"at": iso_now()}
        entry.update({"status": outcome.status} if outcome.status is not None else {})
        if outcome.error is not None:
            delivery.last_error = entry["error"] = redact(outcome.error)
        delivery.attempts.append(entry)
        if outcome.status is not None and 200 <= outcome.status < 300:
            delivery.delivered, delivery.last_error = True, None
            return
        if outcome.status == 410:
            delivery.gone = True
            delivery.last_error = "410 Gone: the receiver asked not to be sent more; stopped"
            return
        if not outcome.retry or attempt == endpoint.max_attempts:
            return
        wait = outcome.retry_after_s if outcome.retry_after_s is not None else backoff(attempt)
        if loop.time() + wait >= deadline:
            delivery.last_error = f"{delivery.last_error}; no retry: the next would start after the deadline"
            return
        await asyncio.sleep(wait)


def backoff(attempt: int) -> float:
    """Exponential with full jitter's upper half: retries of many messages do not arrive in step."""
    ceiling = min(MAX_DELAY_S, BASE_DELAY_S * 2 ** (attempt - 1))
    return float(ceiling * random.uniform(0.5, 1.0))


async def _attempt(client: httpx.AsyncClient, endpoint: Endpoint, body: bytes, message_id: str,
                   timeout_s: float) -> _Outcome:
    import httpx

    timestamp = int(time.time())
    headers = {"content-type": "application/json", "user-agent": USER_AGENT, "webhook-id": message_id,
               "webhook-timestamp": str(timestamp),
               "webhook-signature": sign(endpoint.key, message_id, timestamp, body)}
    try:
        response = await client.post(endpoint.url, content=body, headers=headers, timeout=timeout_s)
    except httpx.TimeoutException:
        return _Outcome(error=f"timed out after {timeout_s:.3g}s", retry=True)
    except httpx.HTTPError as exc:  # refused, reset, DNS: the request may never have left
        return _Outcome(error=f"connection error: {type(exc).__name__}: {exc}"[:300], retry=True)
    status = response.status_code
    if 200 <= status < 300:
        return _Outcome(status=status)
    retry = status >= 500 or status == 429
    error = f"HTTP {status}" + ("" if retry or status == 410 else ": not retried (the receiver refused it)")
    if 300 <= status < 400:
        error = f"HTTP {status}: redirects are not followed; update the webhook URL"
    return _Outcome(status=status, error=error, retry=retry,
                    retry_after_s=retry_after(response.headers.get("retry-after")) if retry else None)


def retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date); None when absent or unreadable."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError, IndexError):
        return None
