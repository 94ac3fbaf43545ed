"""The floor: the least an asyncio DAG scheduler can do. A ready queue (in-degree counters) plus a semaphore.

No events, records, retries or logs: what is left is the price of a task, a dict update and a
wake-up per node, which no engine built on asyncio can go below. `run_fanout_floor` and `run_loop_floor` are the same
for a fan-out (asyncio.gather) and a loop (a while loop).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from workloads import Node, Workload, as_text, fanout_items

Work = Callable[[Node, list[tuple[str, str]]], Awaitable[str]]


async def run_floor(nodes: tuple[Node, ...], work: Work, max_concurrency: int | None) -> dict[str, str]:
    """Run every node once its parents are done; at most `max_concurrency` inside `work` at once."""
    children: dict[str, list[Node]] = {node.name: [] for node in nodes}
    waiting = {node.name: len(node.parents) for node in nodes}
    for node in nodes:
        for parent in node.parents:
            children[parent].append(node)
    outputs: dict[str, str] = {}
    limit = asyncio.Semaphore(max_concurrency or len(nodes))
    finished = asyncio.get_running_loop().create_future()
    running: set[asyncio.Task[None]] = set()

    async def run(node: Node) -> None:
        async with limit:
            outputs[node.name] = await work(node, [(p, outputs[p]) for p in node.parents])
        for child in children[node.name]:
            waiting[child.name] -= 1
            if waiting[child.name] == 0:
                start(child)
        if len(outputs) == len(nodes) and not finished.done():
            finished.set_result(None)

    def done(task: asyncio.Task[None]) -> None:
        running.discard(task)
        if not task.cancelled() and task.exception() and not finished.done():
            finished.set_exception(task.exception())  # type: ignore[arg-type]

    def start(node: Node) -> None:
        task = asyncio.create_task(run(node))
        running.add(task)
        task.add_done_callback(done)

    for node in nodes:
        if not node.parents:
            start(node)
    await finished
    return outputs


async def run_fanout_floor(workload: Workload, work: Work) -> dict[str, Any]:
    """The source, then one `work` per item at once (asyncio.gather), then the sink on the list of results.

    Returns {source: items, item step: results, sink: its output}; `fanout_outputs` adds each item's key.
    """
    source, item, sink = workload.nodes
    items = await make_items(workload.repeat)
    name = item.parents[0]
    results = await asyncio.gather(*[work(item, [(name, topic)]) for topic in items])
    out: dict[str, Any] = {source.name: items, item.name: results}
    out[sink.name] = await work(sink, [(item.name, as_text(results))])
    return out


async def make_items(count: int) -> list[str]:
    """The fan-out's source step: what orchestrai's generated `bench_items` module returns."""
    return fanout_items(count)


async def run_loop_floor(workload: Workload, work: Work, *, tasks: bool = False) -> list[tuple[str, str]]:
    """A plain while loop awaiting the body's two calls per iteration; the check stands for `until`.

    Returns each iteration's (draft, critique); `loop_outputs` keys them like orchestrai's records.
    With `tasks`, each call runs in its own asyncio task, as `run_floor` runs every DAG node: with
    0 latency a plain await never reaches the event loop, so the plain floor is a function call.
    """
    call = work
    if tasks:
        def in_task(node: Node, inputs: list[tuple[str, str]]) -> Awaitable[str]:
            return asyncio.ensure_future(work(node, inputs))  # a coroutine becomes a task

        call = in_task
    writer, critic = workload.nodes
    outputs: list[tuple[str, str]] = []  # each iteration's (draft, critique): what the records keep
    critique: str | None = None
    iteration = 0
    while iteration < workload.repeat:
        iteration += 1
        draft = await call(writer, [] if critique is None else [(writer.parents[0], critique)])
        critique = await call(critic, [(critic.parents[0], draft)])
        outputs.append((draft, critique))
        if critique == "stop":  # the `until` that never holds
            break
    return outputs

