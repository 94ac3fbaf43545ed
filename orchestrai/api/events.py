"""Everything a run does, as events, and the hooks that subscribe to them (progress, memory log, wandb)."""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from .values import SUCCESS_STATUSES, RunStatus, StepStatus, Usage


@dataclass(slots=True)
class StepRecord:
    """What one step did; the memory log stores exactly these fields."""

    id: str
    module: str
    output_name: str
    status: StepStatus = "pending"
    inputs: dict[str, Any] = field(default_factory=dict)
    output: Any = None
    provider: str | None = None
    model: str | None = None
    messages: list[dict[str, str]] = field(default_factory=list)
    usage: Usage = field(default_factory=Usage)
    cost_usd: float | None = None
    started_at: float | None = None  # unix time
    finished_at: float | None = None
    attempts: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None
    calls: int = 0  # provider calls made (a Python module may make several)
    cache_hits: int = 0  # calls answered from the call cache
    # Module-specific facts for the log (e.g. debugger iterations).
    details: dict[str, Any] = field(default_factory=dict)
    # The record this one is part of: a fan-out item's step ("findings" for "findings[3]"), a loop
    # iteration's loop ("refine" for "refine#2/draft"), a sub-pipeline step's calling step.
    parent: str | None = None
    # The fingerprint is computed on first read: a run that neither resumes nor keeps a log never
    # needs it, and hashing it was a tenth of a step's cost.
    fingerprint_source: Callable[[], str] | None = field(default=None, repr=False, compare=False)
    _fingerprint: str | None = field(default=None, repr=False)

    @property
    def fingerprint(self) -> str | None:
        """What resume compares: module, prompt content, model settings, supplement, options."""
        if self._fingerprint is None and self.fingerprint_source is not None:
            self._fingerprint = self.fingerprint_source()
        return self._fingerprint

    @fingerprint.setter
    def fingerprint(self, value: str | None) -> None:
        self._fingerprint = value

    @property
    def succeeded(self) -> bool:
        return self.status in SUCCESS_STATUSES

    @property
    def duration_s(self) -> float | None:
        if self.started_at is None or self.finished_at is None:
            return None
        return self.finished_at - self.started_at


def unredacted(text: str) -> str:
    return text


def chained(first: Callable[[str], str] | None, second: Callable[[str], str]) -> Callable[[str], str]:
    """`second` after `first` (a caller's own redactor, then the run's); just `second` when there is no first."""
    if first is None:
        return second
    return lambda text: second(first(text))


@dataclass(frozen=True)
class RunStarted:
    run_id: str
    pipeline: str
    pipeline_path: str
    step_ids: tuple[str, ...]
    started_at: float
    config: dict[str, Any]  # secrets already redacted
    versions: dict[str, str]
    resumed_from: str | None = None  # the run id this run reuses steps from
    step_modules: tuple[tuple[str, str], ...] = ()  # (module, output_name) per step id, same order
    dry_run: bool = False
    edges: tuple[tuple[str, str], ...] = ()  # (producer, consumer) step ids of the top-level graph
    # The run's own redactor (every key its config and providers hold): whatever a hook writes or
    # sends goes through it, so redaction never depends on the caller passing one.
    redact: Callable[[str], str] = field(default=unredacted, repr=False, compare=False)


@dataclass(frozen=True)
class StepStarted:
    step_id: str
    module: str
    at: float


@dataclass(frozen=True)
class FanoutStarted:
    """A `foreach` step found its list: `total` items will run (as records `step_id[0]`, `step_id[1]`...)."""

    step_id: str
    total: int


@dataclass(frozen=True)
class LoopIteration:
    """A loop began iteration `iteration` (1-based) of at most `max_iterations`."""

    step_id: str
    iteration: int
    max_iterations: int


@dataclass(frozen=True)
class ToolCalled:
    """A tool call of a step's model ended: its result, or the error the model was sent (refused: the
    step does not offer that tool, so nothing ran)."""

    step_id: str
    name: str
    arguments: Any
    result: Any = None
    error: str | None = None
    duration_s: float = 0.0
    refused: bool = False


@dataclass(frozen=True)
class StepToken:
    """A piece of streamed text (only with --stream)."""

    step_id: str
    text: str


@dataclass(frozen=True)
class CallFinished:
    """One provider call finished: its tokens and cost, for live totals."""

    step_id: str
    provider: str
    model: str
    usage: Usage
    cost_usd: float | None
    latency_s: float
    cached: bool = False


@dataclass(frozen=True)
class StepRetrying:
    step_id: str
    attempt: int
    error: str
    wait_s: float


@dataclass(frozen=True)
class RateLimitWaited:
    """A call waited for a rate limit (its model's or provider's) before it could start."""

    step_id: str
    provider: str
    model: str
    wait_s: float


@dataclass(frozen=True)
class Notice:
    """Something the user should know that is not a step's own outcome (e.g. the cache was bypassed)."""

    text: str


@dataclass(frozen=True)
class StepEnded:
    """A step reached a final state (completed, failed, skipped or interrupted)."""

    record: StepRecord


@dataclass(frozen=True)
class Totals:
    input_tokens: int
    output_tokens: int
    cost_usd: float | None  # None when no call had a known price: unknown, not zero
    cost_complete: bool  # False when some model had no known price
    duration_s: float
    by_model: dict[str, dict[str, Any]] = field(default_factory=dict)  # model -> calls, tokens, cost
    cached_steps: int = 0
    resumed_steps: int = 0


@dataclass(frozen=True)
class RunDrained:
    """After RunFinished, what `DrainsAsync` hooks handed back for the run's log (e.g. webhook deliveries),
    by top-level key. Emitted only when some hook handed something, so a run without one costs nothing."""

    run_id: str
    log: dict[str, Any]


@dataclass(frozen=True)
class RunFinished:
    run_id: str
    status: RunStatus
    finished_at: float
    totals: Totals
    records: tuple[StepRecord, ...]
    message: str | None = None  # e.g. what a budget stop spent and what did not run


Event = (RunStarted | StepStarted | StepToken | CallFinished | StepRetrying | Notice | StepEnded | RunFinished
         | FanoutStarted | LoopIteration | ToolCalled | RateLimitWaited | RunDrained)


EVENT_TYPES: tuple[type, ...] = (RunStarted, StepStarted, StepToken, CallFinished, StepRetrying, Notice, StepEnded,
                                 RunFinished, FanoutStarted, LoopIteration, ToolCalled, RateLimitWaited, RunDrained)


@runtime_checkable
class Hook(Protocol):
    """A subscriber. `on_event` is called in the event loop's thread; keep it quick."""

    def on_event(self, event: Event) -> None: ...


@runtime_checkable
class SelectiveHook(Hook, Protocol):
    """A hook that names the event types it handles: it receives only those, and the engine does not
    even build an event that no hook receives. A plain `Hook` receives every event."""

    events: Collection[type]


@dataclass(frozen=True)
class Drained:
    """What a `DrainsAsync` hook hands back: keys for the run's log (never one the log already has, such
    as "status") and notices for the user."""

    log: dict[str, Any] = field(default_factory=dict)
    notices: tuple[str, ...] = ()


@runtime_checkable
class DrainsAsync(Protocol):
    """A hook with work still going when the run ends (webhook deliveries). After RunFinished the runner
    awaits every such hook's `drain()` at once, each for at most `drain_timeout_s` (the hook is expected to
    stop on its own by then; a hook that does not is cut off with a notice), then emits `RunDrained` with
    the log keys they handed back. A drain that raises becomes a notice; it never changes the run's status."""

    drain_timeout_s: float

    async def drain(self) -> Drained | None: ...
