"""What the built-in providers share: which settings go to the API, and how to fit them to an SDK method."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

from ..api import Message, ToolSpec
from ..errors import ProviderError

# Keys of a model_config that are ours, not parameters to send to the provider. `output_schema` is
# set by the engine for a structured call (the JSON Schema the answer must match), `tools` for a step
# with tools (a list of ToolSpec): each built-in provider turns them into its API's own form
# (response_format, a forced tool, a grammar; its tool definitions).
OUR_KEYS = frozenset({"provider", "model", "output_schema", "tools"})


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


def offered_tools(settings: Mapping[str, Any]) -> list[ToolSpec]:
    """The tools a call offers (`settings["tools"]`), `[]` when none. A mapping with ToolSpec's fields is
    taken too (settings that went through JSON, e.g. a cache entry)."""
    tools = settings.get("tools") or []
    specs = []
    for tool in tools:
        if isinstance(tool, ToolSpec):
            specs.append(tool)
        elif isinstance(tool, Mapping) and {"name", "wire_name", "parameters"} <= set(tool):
            specs.append(ToolSpec(str(tool["name"]), str(tool["wire_name"]), str(tool.get("description") or ""),
                                  dict(tool["parameters"])))
        else:
            raise ProviderError(f"settings['tools'] holds {type(tool).__name__}, not a ToolSpec", kind="bad_request",
                                hint="tools are offered through the step's `tools:` list, not model_config")
    return specs


def parse_arguments(text: str) -> dict[str, Any] | str:
    """A tool call's arguments: the JSON object it sent, else its raw text (the engine reports the problem
    to the model). Empty text means no arguments: some servers send "" for a tool without parameters."""
    if not text.strip():
        return {}
    try:
        value = json.loads(text)
    except ValueError:
        return text
    return value if isinstance(value, dict) else text
