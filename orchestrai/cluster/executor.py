"""Rows as Ray tasks: submitted a window at a time, results streamed back as each row finishes.

Fault tolerance is Ray's task retry: a row whose worker process dies is run again (up to
`max_retries` times) on whichever worker is free. A row that raised inside the pipeline is not
retried; the job turns that into a failed result. A finished row's result is small and held by
the driver (inlined, not in a node's object store), and it is handed to the caller the moment
it arrives, so losing a node later never makes Ray reconstruct, i.e. re-run, a finished row.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Coroutine, Iterable
from typing import Any, Protocol, TypeVar

from ..engine.ratelimit import MARGIN_S, WINDOW_S
from .connect import connect, start_local
from .limits import start_limits_actor

T = TypeVar("T")
Row = tuple[int, dict[str, Any]]  # (row number, run inputs)


class RowJob(Protocol):
    """What a worker does per row. Must pickle: it travels to the workers."""

    budget_usd: float | None

    @property
    def key(self) -> str: ...

    def open(self, actor: Any | None) -> Any: ...

    async def run(self, state: Any, row: int, inputs: dict[str, Any]) -> dict[str, Any]: ...

    async def close(self, state: Any) -> None: ...


class _WorkerProcess:
    """A worker's one event loop (in a thread, kept across tasks) and its open jobs."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        threading.Thread(target=self.loop.run_forever, name="orchestrai-rows", daemon=True).start()
        self.states: dict[str, Any] = {}

    def call(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()

    def state(self, job: RowJob, actor: Any) -> Any:
        if job.key not in self.states:
            for old_key in list(self.states):  # an earlier batch's pool and cache: close them
                old_job, old_state = self.states.pop(old_key)
                self.call(old_job.close(old_state))
            self.states[job.key] = (job, job.open(actor))
        return self.states[job.key][1]


_PROCESS: _WorkerProcess | None = None


def run_row(job: RowJob, actor: Any, row: int, inputs: dict[str, Any]) -> dict[str, Any]:
    """The Ray task: one row on this worker's loop."""
    global _PROCESS
    if _PROCESS is None:
        _PROCESS = _WorkerProcess()
    return _PROCESS.call(job.run(_PROCESS.state(job, actor), row, inputs))


class RayExecutor:
    """`run_rows` on Ray. `address` None: a local instance on 127.0.0.1 with `num_cpus` workers."""

    def __init__(self, address: str | None = None, *, num_cpus: int | None = None, max_retries: int = 3,
                 in_flight: int | None = None, window_s: float = WINDOW_S + MARGIN_S) -> None:
        self.address, self.num_cpus = address, num_cpus
        self.max_retries, self.in_flight, self.window_s = max_retries, in_flight, window_s

    async def run_rows(self, rows: Iterable[Row], job: RowJob) -> AsyncIterator[dict[str, Any]]:
        """Each row's result as it finishes (not in row order)."""
        ray = connect(self.address) if self.address else start_local(self.num_cpus)
        actor = start_limits_actor(job.budget_usd, window_s=self.window_s)
        task = ray.remote(max_retries=self.max_retries, retry_exceptions=False)(run_row)
        cap = self.in_flight or 2 * max(1, int(ray.cluster_resources().get("CPU", 1)))
        pending: dict[asyncio.Future[Any], int] = {}
        todo = iter(rows)

        def submit() -> None:
            for row, inputs in todo:
                pending[asyncio.wrap_future(task.remote(job, actor, row, inputs).future())] = row
                if len(pending) >= cap:
                    return

        try:
            submit()
            while pending:
                done, _ = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                for future in done:
                    row = pending.pop(future)
                    yield _result(future, row)
                submit()
        finally:
            for future in pending:
                future.cancel()
            ray.kill(actor)

    @staticmethod
    def limits_state(actor: Any) -> dict[str, Any]:
        import ray

        return dict(ray.get(actor.state.remote()))


def _result(future: asyncio.Future[Any], row: int) -> dict[str, Any]:
    try:
        return dict(future.result())
    except Exception as exc:  # the worker died max_retries + 1 times, or Ray itself failed
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return {"row": row, "status": "failed", "error": f"row {row}: {type(exc).__name__}: {first}"}
