"""A run's report model, built from its log dict: steps with their children folded in, a timeline,
totals by step and by model, and the problems of the log (what is missing).

Every renderer (HTML, Markdown, PDF, a comparison) reads this model only, never the raw log, so
the tolerance for old and partial logs lives in one place (`loading.py` and `_step` here).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ..observe.costs import total_cost
from ..observe.nesting import Sums, fold_text, logged_sums, nest, parent_of, rolled_up
from .loading import LoadedLog

FAILED = frozenset({"failed", "interrupted", "budget_exceeded"})
MAX_SHOWN = 200  # children of one step drawn in the timeline and listed in the steps


@dataclass
class Segment:
    """A piece of a step's bar: `call` (a model call), `failed` (an attempt that failed), `retry_wait`,
    `rate_wait` (waiting for a rate limit), from `start` to `end` (epoch seconds)."""

    kind: str
    start: float
    end: float
    label: str


@dataclass
class StepView:
    id: str
    module: str
    status: str
    parent: str | None
    started: float | None
    finished: float | None
    duration_s: float | None
    provider: str | None
    model: str | None
    sums: Sums  # its own tokens and cost, or its children's summed when it has none of its own
    error: str | None
    raw: dict[str, Any]  # the logged step: messages, output, inputs, details, attempts
    children: list[StepView] = field(default_factory=list)
    fold: str = ""  # `3 items, 1 failed`, `2 iterations`

    @property
    def attempts(self) -> list[dict[str, Any]]:
        attempts = self.raw.get("attempts")
        return [a for a in attempts if isinstance(a, dict)] if isinstance(attempts, list) else []

    @property
    def tool_calls(self) -> list[dict[str, Any]]:
        calls = (self.raw.get("details") or {}).get("tool_calls")
        return [c for c in calls if isinstance(c, dict)] if isinstance(calls, list) else []

    @property
    def failed(self) -> bool:
        return self.status in FAILED

    @property
    def cost_text(self) -> str:
        return self.sums.cost_text() or "—"

    def shown_children(self) -> tuple[list[StepView], int]:
        """The children a page draws, and how many it leaves out: the first MAX_SHOWN, plus every failed
        one after them (a 10,000-item fan-out is 10,000 rows otherwise; the log has them all)."""
        if len(self.children) <= MAX_SHOWN:
            return self.children, 0
        shown = self.children[:MAX_SHOWN] + [c for c in self.children[MAX_SHOWN:] if c.failed]
        return shown, len(self.children) - len(shown)

    def walk(self) -> list[StepView]:
        """This step and every record nested in it, depth first."""
        return [self, *(view for child in self.children for view in child.walk())]

    def segments(self) -> list[Segment]:
        return segments_of(self)


@dataclass
class ModelTotal:
    model: str
    calls: int
    input_tokens: int
    output_tokens: int
    cost_usd: float | None


@dataclass
class RunReport:
    path: str
    run_id: str
    pipeline: str
    status: str
    message: str | None
    started_at: str
    started: float | None
    finished: float | None
    duration_s: float | None
    dry_run: bool
    totals: dict[str, Any]
    by_model: list[ModelTotal]
    steps: list[StepView]  # top level, in the log's order
    edges: list[tuple[str, str]]
    notices: list[str]
    problems: list[str]

    @property
    def failed_steps(self) -> list[StepView]:
        """Every record that failed (children included), top-level steps first."""
        return [view for step in self.steps for view in step.walk() if view.failed]

    @property
    def all_steps(self) -> list[StepView]:
        return [view for step in self.steps for view in step.walk()]

    @property
    def cost_text(self) -> str:
        return total_cost(self.totals.get("cost_usd"), bool(self.totals.get("cost_complete", True)))

    @property
    def input_tokens(self) -> int:
        return int(self.totals.get("input_tokens") or 0)

    @property
    def output_tokens(self) -> int:
        return int(self.totals.get("output_tokens") or 0)


def epoch(text: object) -> float | None:
    if not isinstance(text, str) or not text:
        return None
    try:
        return datetime.fromisoformat(text).timestamp()
    except ValueError:
        return None


def build(loaded: LoadedLog) -> RunReport:
    """The report model of a loaded log."""
    log = loaded.log
    steps: list[dict[str, Any]] = log["steps"]
    top, children = nest(steps, lambda s: (str(s["id"]), s.get("parent") or parent_of(str(s["id"]))))
    views = [_view(step, children) for step in top]
    started = epoch(log.get("started_at"))
    finished = epoch(log.get("finished_at"))
    ends = [v.finished for step in views for v in step.walk() if v.finished is not None]
    duration = log["totals"].get("duration_s")
    if duration is None and started is not None and (finished or ends):
        duration = round((finished or max(ends)) - started, 3)
    edges = [(str(a), str(b)) for a, b in (e for e in log.get("edges") or [] if isinstance(e, list | tuple)
                                           and len(e) == 2)]
    return RunReport(str(loaded.path), str(log.get("run_id")), str(log.get("pipeline")), str(log.get("status")),
                     log.get("message"), str(log.get("started_at") or ""), started, finished, duration,
                     bool(log.get("dry_run")), log["totals"], _by_model(log, steps), views, edges,
                     [str(n) for n in log.get("notices") or []], list(loaded.problems))


def _view(step: dict[str, Any], children: dict[str, list[dict[str, Any]]]) -> StepView:
    kids = [_view(kid, children) for kid in children.get(str(step["id"]), [])]
    sums = rolled_up(step, children, lambda s: str(s["id"]), logged_sums)
    details: dict[str, Any] = step["details"] if isinstance(step.get("details"), dict) else {}
    duration = step.get("duration_s")
    view = StepView(str(step["id"]), str(step.get("module") or "?"), str(step.get("status")),
                    step.get("parent"), epoch(step.get("started_at")), epoch(step.get("finished_at")),
                    float(duration) if isinstance(duration, int | float) else None, step.get("provider"),
                    step.get("model"), sums, step.get("error"), step, kids,
                    fold_text(details, [(k.id, k.status) for k in kids]) if kids or details else "")
    return view


def _by_model(log: dict[str, Any], steps: list[dict[str, Any]]) -> list[ModelTotal]:
    """The log's own totals by model; summed from the steps for a log without them (older, cut short)."""
    by_model = log["totals"].get("by_model")
    if isinstance(by_model, dict) and by_model:
        return [ModelTotal(name, int(v.get("calls") or 0), int(v.get("input_tokens") or 0),
                           int(v.get("output_tokens") or 0), v.get("cost_usd")) for name, v in by_model.items()]
    summed: dict[str, ModelTotal] = {}
    for step in steps:
        if not step.get("model"):
            continue
        total = summed.setdefault(step["model"], ModelTotal(step["model"], 0, 0, 0, None))
        own = logged_sums(step)
        total.calls += sum(1 for a in step.get("attempts") or [] if isinstance(a, dict) and "latency_s" in a)
        total.input_tokens += own.input_tokens
        total.output_tokens += own.output_tokens
        if step.get("cost_usd") is not None:
            total.cost_usd = (total.cost_usd or 0.0) + float(step["cost_usd"])
    return list(summed.values())


def segments_of(view: StepView) -> list[Segment]:
    """The step's attempts as pieces of its bar: rate-limit wait, then the call (or the failed attempt),
    then the wait before the next attempt. An attempt's `started_at` is taken before its rate-limit wait."""
    attempts = view.attempts
    out: list[Segment] = []
    for position, attempt in enumerate(attempts):
        start = epoch(attempt.get("started_at"))
        if start is None:
            continue
        number = attempt.get("attempt", position + 1)
        limit_wait = float(attempt.get("rate_limit_wait_s") or 0.0)
        if limit_wait:
            out.append(Segment("rate_wait", start, start + limit_wait, f"attempt {number}: waited "
                                                                        f"{limit_wait:.2f} s for a rate limit"))
        call_start = start + limit_wait
        if "latency_s" in attempt:
            latency = float(attempt.get("latency_s") or 0.0)
            out.append(Segment("call", call_start, call_start + latency, f"attempt {number}: {latency:.2f} s"))
            continue
        wait = float(attempt.get("wait_s") or 0.0)
        following = epoch(attempts[position + 1].get("started_at")) if position + 1 < len(attempts) else None
        end = (following - wait) if following is not None else (view.finished or call_start)
        end = max(end, call_start)
        out.append(Segment("failed", call_start, end, f"attempt {number} failed ({attempt.get('kind') or 'error'}): "
                                                      f"{attempt.get('error') or ''}"))
        if wait:
            out.append(Segment("retry_wait", end, end + wait, f"retry wait {wait:.2f} s after attempt {number}"))
    return out
