"""The values every part of orchestrai passes around: statuses, messages, usage, completions."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

# A step's state. The success statuses: it ran (completed), every call came from the call cache
# (cached), or its output was reused from an earlier run (resumed).
StepStatus = Literal["pending", "running", "completed", "cached", "resumed", "failed", "skipped", "interrupted"]
SUCCESS_STATUSES: frozenset[StepStatus] = frozenset({"completed", "cached", "resumed"})

# A run's outcome: partial means only `critical: false` steps failed.
RunStatus = Literal["completed", "partial", "failed", "budget_exceeded", "interrupted"]

# Where a module name resolved to, in lookup order.
ModuleKind = Literal["project", "plugin", "builtin", "prompt"]

Role = Literal["system", "user", "assistant", "tool"]

TokenCallback = Callable[[str], None]


# Message, Usage and Completion are values nobody changes, but not frozen dataclasses: building a
# frozen one costs 5x a plain one (each field goes through object.__setattr__), and a step builds
# several of them; at 0-latency that was a tenth of the engine's cost per step.
@dataclass(slots=True)
class ToolCall:
    """A tool call a model asked for. `name` is the tool's wire name (`ToolSpec.wire_name`); `arguments`
    the JSON object it sent, or the raw text when that was not a JSON object."""

    id: str
    name: str
    arguments: dict[str, Any] | str


@dataclass(frozen=True)
class ToolSpec:
    """A tool as a model is offered it (`settings["tools"]` holds a list of these)."""

    name: str  # as the pipeline names it: "add", "weather.forecast"
    wire_name: str  # what the model sees and calls: ^[a-zA-Z0-9_-]{1,64}$, e.g. "weather__forecast"
    description: str
    parameters: dict[str, Any]  # the JSON Schema of its arguments (type: object)


@dataclass(slots=True)
class Message:
    """One message. An assistant message may carry the tool calls it asked for; a `tool` message is the
    result of one call (`tool_call_id`, and the tool's wire name in `name`)."""

    role: Role
    content: str
    tool_calls: list[ToolCall] | None = None
    tool_call_id: str | None = None
    name: str | None = None


@dataclass(slots=True)
class Usage:
    input_tokens: int = 0
    output_tokens: int = 0

    def __add__(self, other: Usage) -> Usage:
        return Usage(self.input_tokens + other.input_tokens, self.output_tokens + other.output_tokens)


@dataclass(slots=True)
class Completion:
    """One model answer."""

    text: str
    usage: Usage
    model: str
    provider: str
    latency_s: float
    raw_id: str | None = None
    cost_usd: float | None = None  # None when the model's price is unknown: never a guess
    tool_calls: tuple[ToolCall, ...] = ()  # the calls the model asks for; empty: this is its answer
