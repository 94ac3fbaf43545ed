"""Rows as Ray tasks: submitted a window at a time, results streamed back as each row finishes.

Fault tolerance is Ray's task retry: a row whose worker process dies is run again (up to
`max_retries` times) on whichever worker is free. A row that raised inside the pipeline is not
retried; the job turns that into a failed result. A finished row's result is small and held by
the driver (inlined, not in a node's object store), and it is handed to the caller the moment
it arrives, so losing a node later never makes Ray reconstruct, i.e. re-run, a finished row.
"""

from __future__ import annotations

import asyncio
import functools
import os
import threading
from collections.abc import AsyncGenerator, Coroutine, Iterable
from typing import Any, TypeVar

from ..batch.executor import RowTask, RunRow, ShippableRunner, crashed
from ..batch.results import RowResult
from ..config import Config
from ..engine.ratelimit import MARGIN_S, WINDOW_S
from ..engine.shared import Shared
from .connect import connect, start_local
from .limits import RemoteBudget, RemoteRateLimits, owner, start_limits_actor

T = TypeVar("T")


def remote_shared(actor: Any, budget_usd: float | None, use_cache: bool, dry_run: bool, config: Config) -> Shared:
    """A worker's `Shared`: its own providers and cache, the actor's rate limits and budget.

    Module-level (bound with functools.partial) so that a RowRunner carrying it still pickles.
    """
    shared = Shared.open(config, budget_usd=budget_usd, use_cache=use_cache, dry_run=dry_run)
    shared.rate_limits = RemoteRateLimits(config.rate_limits, actor)
    shared.budget = RemoteBudget(budget_usd, actor)
    return shared


class _WorkerProcess:
    """A worker's one event loop (in a thread, kept across tasks) and the runner of its current batch or eval.

    Each task brings a fresh unpickled copy of the runner; the first of a batch is kept, so the
    project, pipeline and Shared (one provider pool) are opened once per worker process and batch.
    """

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        threading.Thread(target=self.loop.run_forever, name="orchestrai-rows", daemon=True).start()
        self.runners: dict[str, ShippableRunner] = {}

    def call(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()

    def runner(self, runner: ShippableRunner) -> ShippableRunner:
        if runner.key not in self.runners:
            for old in list(self.runners):  # an earlier batch's pool and cache: close them
                self.call(self.runners.pop(old).aclose())
            self.runners[runner.key] = runner
        return self.runners[runner.key]


_PROCESS: _WorkerProcess | None = None


def run_row_task(runner: ShippableRunner, cwd: str, number: int, inputs: dict[str, Any]) -> RowResult:
    """The Ray task: one row on this worker's loop, in the driver's folder when this machine has it."""
    global _PROCESS
    if _PROCESS is None:
        _PROCESS = _WorkerProcess()
    if os.path.isdir(cwd):  # prompts and modules are also looked up in the current folder
        os.chdir(cwd)
    result = _PROCESS.call(_PROCESS.runner(runner)(number, inputs))
    node, pid = owner()
    result["worker"] = f"{node[:8]}:{pid}"
    return result


class RayExecutor:
    """The Executor on Ray, for a batch's rows or an eval's test runs.

    `address` None: a local instance on 127.0.0.1 with `num_cpus` workers.
    """

    def __init__(self, address: str | None = None, *, num_cpus: int | None = None, max_retries: int = 3,
                 in_flight: int | None = None, window_s: float = WINDOW_S + MARGIN_S) -> None:
        self.address, self.num_cpus = address, num_cpus
        self.max_retries, self.in_flight, self.window_s = max_retries, in_flight, window_s
        self.actor: Any = None  # the batch's LimitsActor while rows run

    async def run_rows(self, rows: Iterable[RowTask], run_row: RunRow) -> AsyncGenerator[RowResult, None]:
        """Each row's result as it finishes (not in row order)."""
        if not isinstance(run_row, ShippableRunner):
            raise TypeError("the Ray executor runs a ShippableRunner (it must pickle to the workers)")
        ray = connect(self.address) if self.address else start_local(self.num_cpus)
        budget_usd = run_row.driver_budget()
        self.actor = start_limits_actor(budget_usd, window_s=self.window_s)
        shipped = run_row.shipped(functools.partial(remote_shared, self.actor, budget_usd, run_row.use_cache,
                                                    run_row.dry_run))
        cwd = os.getcwd()
        task = ray.remote(max_retries=self.max_retries, retry_exceptions=False)(run_row_task)
        cap = self.in_flight or 2 * max(1, int(ray.cluster_resources().get("CPU", 1)))
        pending: dict[asyncio.Future[Any], int] = {}
        todo = iter(rows)

        def submit() -> None:
            while len(pending) < cap and (row := next(todo, None)) is not None:
                pending[asyncio.wrap_future(task.remote(shipped, cwd, *row).future())] = row[0]

        try:
            submit()
            while pending:
                done, _ = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                for future in done:
                    number = pending.pop(future)
                    exc = future.exception()  # the worker died max_retries + 1 times, or Ray failed
                    yield crashed(number, exc) if exc is not None else future.result()
                submit()
        finally:
            for future in pending:
                future.cancel()
            ray.kill(self.actor)
