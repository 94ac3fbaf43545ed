"""A scripted in-process provider for unit tests: queued replies, every request recorded."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from orchestrai.api import Completion, Message, Usage
from orchestrai.errors import ProviderError


@dataclass
class Call:
    messages: list[Message]
    settings: dict[str, Any]
    started: float
    ended: float = 0.0


class ScriptedProvider:
    """Answers from a queue (or a function of the messages); an Exception in the queue is raised."""

    def __init__(self, name: str = "openai", *, replies: list[Any] | None = None,
                 reply: Callable[[list[Message]], str] | None = None, latency_s: float = 0.0) -> None:
        self.name = name
        self.replies = list(replies or [])
        self.reply = reply or (lambda messages: "reply to: " + messages[-1].content[:40])
        self.latency_s = latency_s
        self.calls: list[Call] = []
        self.in_flight = 0
        self.max_in_flight = 0

    async def complete(self, messages: list[Message], settings: dict[str, Any], *, on_token: Any = None) -> Completion:
        call = Call(list(messages), dict(settings), time.monotonic())
        self.calls.append(call)
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            latency = settings.get("latency_s", self.latency_s)
            if latency:
                await asyncio.sleep(latency)
            answer = self.replies.pop(0) if self.replies else self.reply(messages)
            if isinstance(answer, Exception):
                raise answer
            if on_token is not None:
                for part in answer.split(" "):
                    on_token(part + " ")
            return Completion(answer, Usage(10, 5), str(settings.get("model")), self.name, latency, raw_id="scripted-1")
        finally:
            self.in_flight -= 1
            call.ended = time.monotonic()

    async def aclose(self) -> None:
        return None


def rate_limited(message: str = "slow down", retry_after_s: float | None = 0.0) -> ProviderError:
    return ProviderError(f"provider 'openai' rate limited the request (429): {message}", kind="rate_limit",
                         retry_after_s=retry_after_s)
