"""The sliding-window limiter on its own, with short windows so the properties show in a second."""

from __future__ import annotations

import asyncio
import random

from orchestrai.engine.ratelimit import SlidingWindowLimiter
from orchestrai.policies import RateLimit


def run_load(limit: RateLimit, *, window_s: float, calls: int, tokens=lambda i: 1, actual=None):
    """Fire `calls` concurrent calls through one limiter; returns (admitted_at, tokens) per call."""
    admitted: list[tuple[float, int]] = []

    async def main() -> None:
        limiter = SlidingWindowLimiter(limit, window_s=window_s)
        loop = asyncio.get_running_loop()

        async def call(i: int) -> None:
            permit = await limiter.acquire(tokens(i), (0, i))
            used = actual(i) if actual else tokens(i)
            admitted.append((loop.time(), used))
            await asyncio.sleep(0.001)
            limiter.release(permit, used)

        await asyncio.gather(*(call(i) for i in range(calls)))

    asyncio.run(main())
    return sorted(admitted)


def worst_window(admitted, window_s: float, weight=lambda entry: 1) -> float:
    return max(sum(weight(e) for e in admitted if start <= e[0] < start + window_s) for start, _ in admitted)


def test_requests_never_exceed_the_limit_in_any_window() -> None:
    admitted = run_load(RateLimit(requests_per_minute=10), window_s=0.3, calls=35)
    assert worst_window(admitted, 0.3) <= 10
    assert admitted[-1][0] - admitted[0][0] >= 0.9  # 35 calls need at least 3 more windows


def test_tokens_never_exceed_the_limit_and_large_calls_are_not_starved() -> None:
    rng = random.Random(7)
    sizes = [rng.randint(5, 40) for _ in range(40)] + [500]  # one call bigger than the whole limit
    admitted = run_load(RateLimit(tokens_per_minute=100), window_s=0.2, calls=len(sizes), tokens=lambda i: sizes[i])
    assert len(admitted) == len(sizes)
    normal = [e for e in admitted if e[1] <= 100]
    assert worst_window(normal, 0.2, weight=lambda e: e[1]) <= 100


def test_usage_below_the_estimate_frees_capacity() -> None:
    # Each call is estimated at 50 tokens but uses 10: after correction five fit where two did.
    admitted = run_load(RateLimit(tokens_per_minute=100), window_s=0.5, calls=10, tokens=lambda i: 50,
                        actual=lambda i: 10)
    first_window = [e for e in admitted if e[0] < admitted[0][0] + 0.5]
    assert len(first_window) > 2


def test_max_concurrent_and_priority_order() -> None:
    order: list[int] = []

    async def main() -> None:
        limiter = SlidingWindowLimiter(RateLimit(max_concurrent=1), window_s=1.0)
        first = await limiter.acquire(1, (0, 0))

        async def call(priority: int, position: int) -> None:
            permit = await limiter.acquire(1, (-priority, position))
            order.append(priority)
            await asyncio.sleep(0)
            limiter.release(permit, 1)

        tasks = [asyncio.create_task(call(p, i)) for i, p in enumerate([1, 5, 3, 5, 0])]
        await asyncio.sleep(0.01)
        limiter.release(first, 1)
        await asyncio.gather(*tasks)

    asyncio.run(main())
    assert order == [5, 5, 3, 1, 0]
