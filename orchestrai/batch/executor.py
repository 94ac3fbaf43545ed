"""The executor seam: what runs a batch's rows. `LocalExecutor` runs them as asyncio tasks in this process.

An executor gets the rows to run, as (row number, run inputs) pairs, and a `RowRunner`: an async
callable `(row number, inputs) -> RowResult` whose result is a plain JSON-typed dict. It yields each
row's result as the row finishes, in any order, and must run every row it is given exactly once
(a row whose runner raised is yielded as a failed result, never dropped). The driver (`run_batch`)
does everything else: reading rows, the results file, resume, progress and the summary.

Another executor (Ray) ships the runner to worker processes: a `RowRunner` pickles to its plain
settings and builds its project, pipeline and `Shared` on first use in whatever process calls it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from .results import RowResult

if TYPE_CHECKING:
    from ..config import Config
    from ..engine.shared import Shared

RowTask = tuple[int, dict[str, Any]]  # (row number, run inputs)
RunRow = Callable[[int, dict[str, Any]], Awaitable[RowResult]]
SharedFactory = Callable[["Config"], "Shared"]  # a module-level function, so a runner with one still pickles


@runtime_checkable
class ShippableRunner(Protocol):
    """A runner another process can run (a batch's rows, an eval's test runs): what the Ray executor needs.

    It pickles to plain settings and opens its project and `Shared` on first use in the process that
    calls it; `key` names its batch or eval, so a worker process keeps one open runner per key.
    """

    key: str
    use_cache: bool
    dry_run: bool

    def driver_budget(self) -> float | None:
        """The budget in USD every worker shares (opening the runner in the driver's process)."""
        ...

    def shipped(self, shared_factory: SharedFactory) -> ShippableRunner:
        """A copy for the workers: absolute paths, and `shared_factory` to open each worker's Shared."""
        ...

    async def __call__(self, number: int, inputs: dict[str, Any]) -> RowResult: ...

    async def aclose(self) -> None: ...


class Executor(Protocol):
    def run_rows(self, rows: Iterable[RowTask], run_row: RunRow) -> AsyncGenerator[RowResult, None]:
        """Run every row with `run_row`; yield each result as its row finishes."""
        ...


def crashed(number: int, exc: BaseException) -> RowResult:
    """The result of a row whose runner raised (a bug, not a user's mistake: the runner catches those)."""
    return {"row": number, "status": "failed", "run_id": None, "outputs": {}, "log": None,
            "totals": {"input_tokens": 0, "output_tokens": 0, "cost_usd": None, "duration_s": 0.0},
            "error": f"internal error: {type(exc).__name__}: {exc}"}


class LocalExecutor:
    """At most `concurrency` rows at once, as asyncio tasks sharing this process's event loop.

    Rows are taken from the iterable only as slots free up, so 10,000 rows are never 10,000 tasks.
    On cancellation (Ctrl-C) the running rows are cancelled; finished ones were already yielded.
    """

    def __init__(self, concurrency: int = 4) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self.concurrency = concurrency

    async def run_rows(self, rows: Iterable[RowTask], run_row: RunRow) -> AsyncGenerator[RowResult, None]:
        # Finished tasks land in a queue from their done-callbacks: O(1) per row, where asyncio.wait
        # would add and remove a callback on every running task for every row that ends.
        pending = iter(rows)
        finished: asyncio.Queue[asyncio.Task[RowResult]] = asyncio.Queue()
        running: dict[asyncio.Task[RowResult], int] = {}
        try:
            while True:
                while len(running) < self.concurrency and (row := next(pending, None)) is not None:
                    task = asyncio.ensure_future(run_row(*row))
                    running[task] = row[0]
                    task.add_done_callback(finished.put_nowait)
                if not running:
                    return
                done = await finished.get()
                number = running.pop(done)
                exc = done.exception()
                yield crashed(number, exc) if exc is not None else done.result()
        finally:
            for unfinished in running:
                unfinished.cancel()
            if running:
                await asyncio.gather(*running, return_exceptions=True)
