"""The snake_case names of a run's events: the `type` of `--events` JSON lines (observe/event_stream.py)
and what a webhook's `events:` lists (webhookconfig.py, observe/webhooks.py). One mapping, here.

A leaf module (it imports nothing of orchestrai), so config validation and the observe layer can both
read it. Events are named by class name, and a StepEnded by its record's status: `step_failed`,
`step_skipped`, or `step_finished` for every other final status. RunDrained (the log's bookkeeping
after the run) has no name: it is neither streamed nor deliverable.
"""

from __future__ import annotations

STEP_END_NAMES = ("step_finished", "step_failed", "step_skipped")

# Class name in orchestrai.api -> the names its events take (in the order the docs list them).
NAMES_BY_CLASS: dict[str, tuple[str, ...]] = {
    "RunStarted": ("run_started",),
    "RunFinished": ("run_finished",),
    "StepStarted": ("step_started",),
    "StepEnded": STEP_END_NAMES,
    "StepRetrying": ("step_retrying",),
    "RateLimitWaited": ("rate_limit_waited",),
    "CallFinished": ("call_finished",),
    "Notice": ("notice",),
    "FanoutStarted": ("fanout_started",),
    "LoopIteration": ("loop_iteration",),
    "ToolCalled": ("tool_called",),
    "StepToken": ("step_token",),
}
EVENT_NAMES: tuple[str, ...] = tuple(name for names in NAMES_BY_CLASS.values() for name in names)
_SIMPLE = {cls: names[0] for cls, names in NAMES_BY_CLASS.items() if len(names) == 1}


def step_end_name(status: str) -> str:
    """The name of a step's end by its status."""
    return "step_failed" if status == "failed" else "step_skipped" if status == "skipped" else "step_finished"


def event_name(event: object) -> str | None:
    """The name of one event (a StepEnded by its status); None for an event without one."""
    kind = type(event).__name__
    if kind == "StepEnded":
        return step_end_name(str(getattr(getattr(event, "record", None), "status", "")))
    return _SIMPLE.get(kind)


def class_names_of(names: set[str] | frozenset[str] | tuple[str, ...]) -> set[str]:
    """The class names whose events carry any of `names` (what a hook subscribing to them must receive)."""
    return {cls for cls, own in NAMES_BY_CLASS.items() if set(own) & set(names)}
