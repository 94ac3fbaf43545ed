"""Anthropic through the official async SDK (system prompt in `system`, max_tokens required)."""

from __future__ import annotations

import time
from typing import Any

from ..errors import MissingExtraError
from .base import Completion, Message, TokenCallback, Usage, fit_to_signature, provider_params, split_system
from .sdk_errors import translate

DEFAULT_MAX_TOKENS = 4096  # the Messages API requires max_tokens; this is our default when unset


class AnthropicProvider:
    """Messages API over the official `anthropic` SDK."""

    def __init__(self, name: str, *, api_key: str, base_url: str | None, timeout_s: float, key_env: str | None) -> None:
        try:
            import anthropic
        except ImportError as exc:  # pragma: no cover - a dependency of the package
            raise MissingExtraError("the anthropic package is not installed", hint="pip install anthropic") from exc
        self.name = name
        self._sdk = anthropic
        self._key_env = key_env
        self._client = anthropic.AsyncAnthropic(api_key=api_key, base_url=base_url, timeout=timeout_s, max_retries=0)
        self.base_url = str(self._client.base_url)

    async def complete(self, messages: list[Message], settings: dict[str, Any], *,
                       on_token: TokenCallback | None = None) -> Completion:
        model = str(settings["model"])
        system, conversation = split_system(messages)
        params = provider_params(settings)
        request: dict[str, Any] = {"model": model, "max_tokens": params.pop("max_tokens", DEFAULT_MAX_TOKENS),
                                   "messages": [{"role": m.role, "content": m.content} for m in conversation], **params}
        if system:
            request["system"] = system
        started = time.perf_counter()
        try:
            if on_token is None:
                create = self._client.messages.create
                response = await create(**fit_to_signature(create, request))
            else:
                open_stream = self._client.messages.stream
                async with open_stream(**fit_to_signature(open_stream, request)) as stream:
                    async for text in stream.text_stream:
                        on_token(text)
                    response = await stream.get_final_message()
        except self._sdk.APIError as exc:
            raise translate(exc, provider=self.name, model=model, base_url=self.base_url, key_env=self._key_env) from exc
        text = "".join(block.text for block in response.content if getattr(block, "type", "") == "text")
        usage = Usage(int(response.usage.input_tokens or 0), int(response.usage.output_tokens or 0))
        return Completion(text, usage, response.model or model, self.name, time.perf_counter() - started, response.id)

    async def aclose(self) -> None:
        await self._client.close()
