"""The echo provider: answers from its input, deterministically, with no network.

It serves dry runs (what would be sent), tests and benchmarks (`latency_s` simulates a model).
Offered tools, it calls each once (arguments: an instance of the tool's parameters schema) before
any tool result is in the conversation, then answers naming the results, so `--dry-run` shows
tools being called and their results flowing into the answer.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from ..api import Completion, Message, ProviderSettings, ProviderType, TokenCallback, ToolCall, ToolSpec, Usage
from ..schema_instance import example_instance
from .base import offered_tools

REPLY_CHARS = 200  # bounded so a long chain of echo steps does not grow without limit
RESULT_CHARS = 60  # of each tool result quoted in the answer


class EchoProvider:
    """Replies `[echo <model>] <start of the last user message>`; to a structured call, an instance of the schema."""

    def __init__(self, name: str = "echo", *, latency_s: float = 0.0) -> None:
        self.name = name
        self.latency_s = latency_s

    async def complete(self, messages: list[Message], settings: dict[str, Any], *,
                       on_token: TokenCallback | None = None) -> Completion:
        started = time.perf_counter()
        latency = float(settings.get("latency_s", self.latency_s))
        if latency > 0:
            await asyncio.sleep(latency)
        model = str(settings.get("model") or "echo")
        tools = offered_tools(settings)
        if tools and not any(m.role == "tool" for m in messages):
            calls = _calls(tools)
            sent = len(json.dumps([c.arguments for c in calls]))
            usage = Usage(sum([len(m.content) for m in messages]) // 4 + 1, sent // 4 + 1)
            return Completion("", usage, model, self.name, time.perf_counter() - started, tool_calls=calls)
        last_user = ""
        for message in reversed(messages):
            if message.role == "user":
                last_user = message.content
                break
        schema = settings.get("output_schema")
        if schema is not None:  # a structured call: a deterministic instance of the schema, as JSON
            text = json.dumps(example_instance(schema), ensure_ascii=False)
        else:
            text = f"[echo {model}] {last_user[:REPLY_CHARS]}{_results(messages)}"
        if on_token is not None:
            for word in text.split(" "):
                on_token(word + " ")
        usage = Usage(sum([len(m.content) for m in messages]) // 4 + 1, len(text) // 4 + 1)
        return Completion(text, usage, model, self.name, time.perf_counter() - started)

    async def aclose(self) -> None:
        return None


def _calls(tools: list[ToolSpec]) -> tuple[ToolCall, ...]:
    """One call of each tool, in order, with a schema-valid argument object."""
    calls = []
    for n, tool in enumerate(tools, start=1):
        arguments = example_instance(tool.parameters)
        calls.append(ToolCall(f"echo-call-{n}", tool.wire_name, arguments if isinstance(arguments, dict) else {}))
    return tuple(calls)


def _results(messages: list[Message]) -> str:
    """` (tool results: add: 42; ...)` for the tool messages of the conversation, "" without any."""
    results = [f"{m.name or m.tool_call_id}: {m.content[:RESULT_CHARS]}" for m in messages if m.role == "tool"]
    return f" (tool results: {'; '.join(results)})" if results else ""


def _create_provider(settings: ProviderSettings) -> EchoProvider:
    return EchoProvider(settings.name, latency_s=float(settings.options.get("latency_s", 0.0)))


PROVIDER_TYPE = ProviderType(create=_create_provider, free=True, requires_key=False, default_model="echo")
