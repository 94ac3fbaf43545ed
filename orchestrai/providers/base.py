"""The provider interface: messages and settings in, a completion with usage out."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Protocol

TokenCallback = Callable[[str], None]

# Keys of a model_config that are ours, not parameters to send to the provider.
OUR_KEYS = frozenset({"provider", "model"})


# Message, Usage and Completion are values nobody changes, but not frozen dataclasses: building a
# frozen one costs 5x a plain one (each field goes through object.__setattr__), and a step builds
# several of them; at 0-latency that was a tenth of the engine's cost per step.
@dataclass(slots=True)
class Message:
    role: str  # "system" | "user" | "assistant"
    content: str


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


class Provider(Protocol):
    """Anything that can answer a list of messages."""

    name: str

    async def complete(self, messages: list[Message], settings: dict[str, Any], *,
                       on_token: TokenCallback | None = None) -> Completion: ...

    async def aclose(self) -> None: ...


def provider_params(settings: dict[str, Any]) -> dict[str, Any]:
    """The settings to pass through to the SDK (everything except provider and model)."""
    return {k: v for k, v in settings.items() if k not in OUR_KEYS and v is not None}


def fit_to_signature(function: Callable[..., Any], request: dict[str, Any]) -> dict[str, Any]:
    """Move parameters the SDK method does not name into `extra_body`, so they still reach the server.

    SDK releases add and drop named parameters (anthropic 2.x no longer names `temperature`), and
    OpenAI-compatible servers take their own (vLLM's `top_k`); the wire format accepts them all.
    """
    named = _parameter_names(function)
    known = {k: v for k, v in request.items() if k in named}
    extra = {k: v for k, v in request.items() if k not in named}
    if extra:
        known["extra_body"] = {**known.get("extra_body", {}), **extra}
    return known


_PARAMETER_NAMES: dict[Any, frozenset[str]] = {}  # an SDK method's function -> the parameters it names


def _parameter_names(function: Callable[..., Any]) -> frozenset[str]:
    """The parameters `function` names; inspect.signature of an SDK method takes ~0.2 ms, so once per method.

    Keyed by the plain function behind a bound method: the key does not keep a client alive.
    """
    key = getattr(function, "__func__", function)
    if key not in _PARAMETER_NAMES:
        import inspect

        _PARAMETER_NAMES[key] = frozenset(inspect.signature(function).parameters)
    return _PARAMETER_NAMES[key]


def split_system(messages: list[Message]) -> tuple[str | None, list[Message]]:
    """Separate system messages (joined) from the conversation, as Anthropic wants them."""
    system = [m.content for m in messages if m.role == "system"]
    rest = [m for m in messages if m.role != "system"]
    return ("\n\n".join(system) if system else None), rest
