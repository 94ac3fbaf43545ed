"""The floor: the least an asyncio DAG scheduler can do. A ready queue (in-degree counters) plus a semaphore.

No events, records, retries or logs: what is left is the price of a task, a dict update and a
wake-up per node, which no engine built on asyncio can go below.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from workloads import Node

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
