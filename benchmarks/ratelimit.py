"""How close the rate limiter gets to the allowed rate, and that it never exceeds it.

Two measurements, in one sitting:
1. The limiter alone under saturating load, with the 60-second window scaled down to 2 seconds
   (the production margin of 0.5 s per 60 s scaled with it), for a requests limit, a tokens limit
   and both together. Achieved rate = calls admitted per window / allowed per window over 10
   windows.
2. `--engine`: the real engine (run_pipeline, echo provider) with the real 60-second window:
   180 independent steps at requests_per_minute: 60, about three minutes.

Run: python benchmarks/ratelimit.py [--engine]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import tempfile
import time
from pathlib import Path

from orchestrai.engine.ratelimit import MARGIN_S, WINDOW_S, SlidingWindowLimiter
from orchestrai.policies import RateLimit

SCALED_WINDOW_S = 2.0
WINDOWS = 10


async def saturate(limit: RateLimit, tokens_per_call: int, duration_s: float) -> list[tuple[float, int]]:
    """Keep far more callers waiting than the limit admits; return (admitted_at, tokens) of every call."""
    limiter = SlidingWindowLimiter(limit, window_s=SCALED_WINDOW_S * (WINDOW_S + MARGIN_S) / WINDOW_S)
    loop = asyncio.get_running_loop()
    admitted: list[tuple[float, int]] = []
    stop_at = loop.time() + duration_s

    async def caller(seed: int) -> None:
        rng = random.Random(seed)
        while loop.time() < stop_at:
            size = tokens_per_call or rng.randint(50, 150)
            permit = await limiter.acquire(size, (0, seed))
            if loop.time() >= stop_at:
                limiter.release(permit, size)
                return
            admitted.append((loop.time(), size))
            await asyncio.sleep(0.005)
            limiter.release(permit, size)

    callers = [asyncio.create_task(caller(i)) for i in range(200)]
    await asyncio.sleep(duration_s + 0.1)
    for task in callers:
        task.cancel()
    await asyncio.gather(*callers, return_exceptions=True)
    return admitted


def achieved(admitted: list[tuple[float, int]], window_s: float, allowed: int, weight) -> tuple[float, float]:
    """(achieved / allowed, worst sliding window) in the limited unit.

    The first window is a burst up to the limit; after it, the sustained rate is what the limiter
    really delivers: everything admitted later, over the time it took, against the allowed rate.
    """
    t0 = admitted[0][0]
    later = [a for a in admitted if a[0] >= t0 + window_s]
    span = later[-1][0] - t0
    sustained = sum(weight(a) for a in later) / (span / window_s)  # per window, after the first
    worst = max(sum(weight(a) for a in admitted if s <= a[0] < s + window_s) for s, _ in admitted)
    return sustained / allowed, worst


def limiter_alone() -> list[str]:
    rows = []
    cases = [("requests: 100/window", RateLimit(requests_per_minute=100), 1),
             ("tokens: 10,000/window (50-150 per call)", RateLimit(tokens_per_minute=10_000), 0),
             ("both: 100 req and 8,000 tok/window", RateLimit(requests_per_minute=100, tokens_per_minute=8_000), 0)]
    for name, limit, size in cases:
        admitted = asyncio.run(saturate(limit, size, WINDOWS * SCALED_WINDOW_S))
        if limit.tokens_per_minute:
            share, worst = achieved(admitted, SCALED_WINDOW_S, limit.tokens_per_minute, lambda a: a[1])
            unit = "tokens"
        else:
            share, worst = achieved(admitted, SCALED_WINDOW_S, limit.requests_per_minute or 0, lambda a: 1)
            unit = "requests"
        rows.append(f"| {name} | {len(admitted)} calls in {WINDOWS} windows | {share:.1%} | {worst:,} {unit} |")
    return rows


def engine_run() -> str:
    from orchestrai.engine.options import RunOptions
    from orchestrai.engine.runner import run_pipeline
    from orchestrai.project import Project

    steps = 180
    rpm = 60
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        body = "\n".join(f"  - {{module: translator, inputs: [request], output_name: t{i}}}" for i in range(steps))
        (root / "wide.yml").write_text("pipeline:\n  - {module: start_module, output_name: request}\n" + body + "\n")
        (root / "config.yml").write_text(f"default_model_config: {{provider: echo}}\nmax_concurrency: 1000\n"
                                         f"rate_limits:\n  echo: {{requests_per_minute: {rpm}}}\n")
        project = Project.open(root / "config.yml")
        graph = project.load(root / "wide.yml")
        started = time.monotonic()
        result = asyncio.run(run_pipeline(graph, project.config, project.registry,
                                          RunOptions(run_inputs={"request": "r"})))
        elapsed = time.monotonic() - started
    assert result.status == "completed"
    # Echo answers at once, so a step finishes when its call was admitted.
    starts = sorted(r.finished_at for r in result.records[1:])
    worst = max(sum(1 for t in starts if s <= t < s + 60) for s in starts)
    # As above: after the first window's burst, calls per window over the time they took.
    share = (steps - rpm) / ((starts[-1] - starts[0]) / 60) / rpm
    return (f"| engine, echo provider, 60 s window: {steps} steps at {rpm}/min | {elapsed:.1f} s total | "
            f"{share:.1%} | {worst} requests |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engine", action="store_true", help="also run the 3-minute real-engine measurement")
    args = parser.parse_args()
    print(f"python {sys.version.split()[0]}, {time.strftime('%Y-%m-%d')}")
    print("| workload | admitted | achieved / allowed | worst sliding window |")
    print("| --- | --- | --- | --- |")
    for row in limiter_alone():
        print(row)
    if args.engine:
        print(engine_run())


if __name__ == "__main__":
    main()
