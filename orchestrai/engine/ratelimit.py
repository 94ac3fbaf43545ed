"""Rate limits shared by every step of a run: requests and tokens per minute, calls in flight.

Why a sliding window and not a token bucket: a bucket of N requests refilled at N/minute lets a
provider see up to 2N requests in one 60-second window (a full bucket, then the refill). Our
promise is stronger — in *no* 60-second window does a provider receive more than allowed — so
each limiter keeps the admission time and token count of the calls of the last window (plus a
small margin for the time between admission and arrival) and admits a call only if it fits.
Under load it still runs at the full allowed rate: a slot frees exactly when its call leaves the
window.

Waiting calls are served strictly by priority (higher step `priority` first, then pipeline order),
so when the limit, not the graph, is the bottleneck, important steps go first.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..policies import ProviderRateLimits, RateLimit

WINDOW_S = 60.0
MARGIN_S = 0.5  # admission happens just before sending; the server sees the call a little later


@dataclass
class Permit:
    """One admitted call; give it back with `release` (and the real token count when known)."""

    limiter: SlidingWindowLimiter
    entry: list[float]  # [admitted_at, tokens] in the limiter's window


@dataclass(order=True)
class _Waiter:
    key: tuple[int, int]
    seq: int
    tokens: int = field(compare=False)
    future: asyncio.Future[Permit] = field(compare=False)


class SlidingWindowLimiter:
    """Admits calls so that no window of WINDOW_S seconds holds more requests or tokens than allowed."""

    def __init__(self, limit: RateLimit, *, window_s: float = WINDOW_S + MARGIN_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.limit = limit
        self.window_s = window_s
        self.clock = clock
        self._window: deque[list[float]] = deque()
        self._window_tokens = 0.0
        self._in_flight = 0
        self._waiters: list[_Waiter] = []
        self._seq = itertools.count()
        self._timer: asyncio.TimerHandle | None = None

    async def acquire(self, tokens: int, priority: tuple[int, int] = (0, 0)) -> Permit:
        """Wait until the call fits; `priority` sorts waiters (smaller first: (-step priority, position))."""
        future: asyncio.Future[Permit] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiters, _Waiter(priority, next(self._seq), tokens, future))
        self._pump()
        try:
            return await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():
                self.release(future.result(), actual_tokens=None)
            raise

    def release(self, permit: Permit, actual_tokens: int | None) -> None:
        """The call is over: free its concurrency slot and correct its token count."""
        self._in_flight -= 1
        if actual_tokens is not None and permit.entry in self._window:
            self._window_tokens += actual_tokens - permit.entry[1]
            permit.entry[1] = actual_tokens
        self._pump()

    def _pump(self) -> None:
        now = self.clock()
        self._expire(now)
        while self._waiters:
            top = self._waiters[0]
            if top.future.done():  # cancelled while waiting
                heapq.heappop(self._waiters)
                continue
            wait = self._wait_for(top.tokens, now)
            if wait is None:
                break  # concurrency-bound: a release will pump again
            if wait > 0:
                self._schedule(wait)
                break
            heapq.heappop(self._waiters)
            entry = [now, float(top.tokens)]
            self._window.append(entry)
            self._window_tokens += top.tokens
            self._in_flight += 1
            top.future.set_result(Permit(self, entry))

    def _wait_for(self, tokens: int, now: float) -> float | None:
        """0 if a call of `tokens` fits now, seconds until it might, or None while only a release can help."""
        limit = self.limit
        if limit.max_concurrent is not None and self._in_flight >= limit.max_concurrent:
            return None
        waits = [0.0]
        if limit.requests_per_minute is not None and len(self._window) >= limit.requests_per_minute:
            waits.append(self._window[-limit.requests_per_minute][0] + self.window_s - now)
        if limit.tokens_per_minute is not None and self._window \
                and self._window_tokens + tokens > limit.tokens_per_minute:
            # A call larger than the whole limit is admitted alone into an empty window, never starved.
            needed = self._window_tokens + tokens - limit.tokens_per_minute
            freed = 0.0
            for admitted_at, entry_tokens in self._window:
                freed += entry_tokens
                if freed >= needed:
                    waits.append(admitted_at + self.window_s - now)
                    break
            else:
                waits.append(self._window[-1][0] + self.window_s - now)
        return max(waits)

    def _expire(self, now: float) -> None:
        while self._window and self._window[0][0] <= now - self.window_s:
            self._window_tokens -= self._window.popleft()[1]

    def _schedule(self, delay: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = asyncio.get_running_loop().call_later(delay + 0.001, self._pump)


class RateLimits:
    """The limiters of one run, per provider and per (provider, model), created on first use."""

    def __init__(self, settings: dict[str, ProviderRateLimits]) -> None:
        self.settings = settings
        self._limiters: dict[tuple[str, str | None], SlidingWindowLimiter] = {}

    def limiters_for(self, provider: str, model: str) -> list[SlidingWindowLimiter]:
        """Model-specific limiter first (the narrower), then the provider's."""
        provider_limits = self.settings.get(provider)
        if provider_limits is None:
            return []
        found = []
        model_limits = provider_limits.for_model(model)
        if model_limits is not None:
            found.append(self._get((provider, model), model_limits))
        if provider_limits.has_limits():
            found.append(self._get((provider, None), provider_limits))
        return found

    def _get(self, key: tuple[str, str | None], limit: Any) -> SlidingWindowLimiter:
        if key not in self._limiters:
            self._limiters[key] = SlidingWindowLimiter(limit)
        return self._limiters[key]
