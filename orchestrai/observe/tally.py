"""Live counters for the progress views: running steps, fan-outs and loops, tokens and cost.

Every event costs O(1) (O(nesting depth) at most): a fan-out of 10,000 items is three counters,
not 10,000 rows; its items are never kept one by one.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..api import CallFinished, Event, FanoutStarted, LoopIteration, RunStarted, StepEnded, StepStarted
from .costs import total_cost
from .nesting import is_item, parent_of


@dataclass(slots=True)
class Fanout:
    """A `foreach` step's progress: its items done and failed, what they cost so far."""

    total: int
    since: float  # clock time of FanoutStarted
    done: int = 0
    failed: int = 0
    tokens: int = 0
    cost: float | None = 0.0  # None once some call had no price
    shown_tenth: int = 0  # the plain view: the last tenth it reported, and when
    shown_at: float = 0.0

    def eta_s(self, now: float) -> float | None:
        """Seconds until the last item, at the pace so far; None before the first item ends."""
        if not self.done or self.done >= self.total:
            return None
        return (now - self.since) * (self.total - self.done) / self.done


class Tally:
    """Counters shared by both views. `update` says where a step event's step is shown."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.total = 0  # top-level steps
        self.done = 0
        self.pipeline = ""
        # Steps shown on their own while they run (top level, loop bodies, sub-pipeline steps), and
        # the same entries by the running step they are drawn under (None: the top level).
        self.running: dict[str, dict[str, Any]] = {}
        self.children: dict[str | None, dict[str, dict[str, Any]]] = {}
        self.fanouts: dict[str, Fanout] = {}
        self.loops: dict[str, tuple[int, int]] = {}  # loop id -> (iteration, max_iterations)
        self.implied: list[str] = []  # the steps the last StepStarted showed as started too (outermost first)
        self.tokens = 0
        self.cost = 0.0
        self.priced = self.unpriced = False  # whether some call had a price, and some none

    def fanout_of(self, step_id: str) -> str | None:
        """The fan-out a step is folded into: the outermost one it is (or is inside) an item of."""
        found, current = None, step_id
        while (parent := parent_of(current)) is not None:
            if is_item(current):
                found = parent
            current = parent
        return found

    def update(self, event: Event) -> str | None:
        """Count `event`; for a step's events, the fan-out its step is folded into (None: shown itself)."""
        if isinstance(event, CallFinished):
            self._call(event)
        elif isinstance(event, StepStarted):
            return self._started(event.step_id, event.module)
        elif isinstance(event, StepEnded):
            return self._ended(event)
        elif isinstance(event, FanoutStarted):
            folded = self.fanout_of(event.step_id)
            if folded is None:  # a fan-out inside another's item counts for that one only
                self.fanouts[event.step_id] = Fanout(event.total, self.clock(), shown_at=self.clock())
                self._show(event.step_id, "foreach")
            return folded
        elif isinstance(event, LoopIteration):
            folded = self.fanout_of(event.step_id)
            if folded is None:
                self.loops[event.step_id] = (event.iteration, event.max_iterations)
                self._show(event.step_id, "loop")
            return folded
        elif isinstance(event, RunStarted):
            self.pipeline = event.pipeline
            self.total = sum(1 for step_id in event.step_ids if parent_of(step_id) is None)
        return None

    def _started(self, step_id: str, module: str) -> str | None:
        self.implied.clear()
        folded = self.fanout_of(step_id)
        if folded is None:
            self._show(step_id, module)
        return folded

    def _show(self, step_id: str, module: str) -> None:
        if step_id in self.running:  # FanoutStarted or LoopIteration came first
            if module not in ("foreach", "loop"):
                self.running[step_id]["module"] = module
            return
        under = parent_of(step_id)
        if under is not None and under not in self.running:
            # A sub-pipeline step announces no start of its own: its first inner step's start opens it.
            self._show(under, "<pipeline>")
            self.implied.append(under)
        info = {"module": module, "since": self.clock(), "tokens": 0, "cost": 0.0, "under": under}
        self.running[step_id] = info
        self.children.setdefault(under, {})[step_id] = info

    def _ended(self, event: StepEnded) -> str | None:
        record = event.record
        info = self.running.pop(record.id, None)
        if info is not None:
            self.children.get(info["under"], {}).pop(record.id, None)
        if record.parent is None and parent_of(record.id) is None:
            self.done += 1
        folded = self.fanout_of(record.id)
        fanout = self.fanouts.get(record.parent or "") if is_item(record.id) else None
        if fanout is not None and folded == record.parent:
            fanout.done += 1
            fanout.failed += record.status == "failed"
        return folded

    def _call(self, event: CallFinished) -> None:
        tokens = event.usage.input_tokens + event.usage.output_tokens
        self.tokens += tokens
        self.cost += event.cost_usd or 0.0
        if event.cost_usd is None:
            self.unpriced = True
        else:
            self.priced = True
        current: str | None = event.step_id
        while current is not None:  # the step, and each running step or fan-out it is part of
            fanout = self.fanouts.get(current)
            if fanout is not None:
                fanout.tokens += tokens
                fanout.cost = None if event.cost_usd is None or fanout.cost is None else fanout.cost + event.cost_usd
            step = self.running.get(current)
            if step is not None:
                step["tokens"] += tokens
                cost = step["cost"]
                step["cost"] = None if event.cost_usd is None or cost is None else cost + event.cost_usd
            current = parent_of(current)

    def cost_text(self) -> str:
        """The cost so far: unknown (—) only once calls were made and none had a price."""
        return total_cost(self.cost if self.priced or not self.unpriced else None, not self.unpriced)
