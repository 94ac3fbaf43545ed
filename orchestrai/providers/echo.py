"""The echo provider: answers from its input, deterministically, with no network.

It serves dry runs (what would be sent), tests and benchmarks (`latency_s` simulates a model).
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from ..api import Completion, Message, ProviderSettings, ProviderType, TokenCallback, Usage
from ..schema_instance import example_instance

REPLY_CHARS = 200  # bounded so a long chain of echo steps does not grow without limit


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
        last_user = ""
        for message in reversed(messages):
            if message.role == "user":
                last_user = message.content
                break
        schema = settings.get("output_schema")
        if schema is not None:  # a structured call: a deterministic instance of the schema, as JSON
            text = json.dumps(example_instance(schema), ensure_ascii=False)
        else:
            text = f"[echo {model}] {last_user[:REPLY_CHARS]}"
        if on_token is not None:
            for word in text.split(" "):
                on_token(word + " ")
        usage = Usage(sum([len(m.content) for m in messages]) // 4 + 1, len(text) // 4 + 1)
        return Completion(text, usage, model, self.name, time.perf_counter() - started)

    async def aclose(self) -> None:
        return None


def _create_provider(settings: ProviderSettings) -> EchoProvider:
    return EchoProvider(settings.name, latency_s=float(settings.options.get("latency_s", 0.0)))


PROVIDER_TYPE = ProviderType(create=_create_provider, free=True, requires_key=False, default_model="echo")
