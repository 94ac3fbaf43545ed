"""Anthropic through the official async SDK (system prompt in `system`, max_tokens required)."""

from __future__ import annotations

import json
import time
from typing import Any

from ..api import Completion, Message, ProviderSettings, ProviderType, TokenCallback, Usage
from .base import fit_to_signature, provider_params, split_system
from .schema_formats import TOOL_NAME, WRAPPED_KEY, anthropic_tool
from .sdk_client import SDKProvider

DEFAULT_MAX_TOKENS = 4096  # the Messages API requires max_tokens; this is our default when unset


class AnthropicProvider(SDKProvider):
    """Messages API over the official `anthropic` SDK."""

    sdk = "anthropic"
    client_class = "AsyncAnthropic"

    async def complete(self, messages: list[Message], settings: dict[str, Any], *,
                       on_token: TokenCallback | None = None) -> Completion:
        model = str(settings["model"])
        system, conversation = split_system(messages)
        params = provider_params(settings)
        request: dict[str, Any] = {"model": model, "max_tokens": params.pop("max_tokens", DEFAULT_MAX_TOKENS),
                                   "messages": [{"role": m.role, "content": m.content} for m in conversation], **params}
        if system:
            request["system"] = system
        schema = settings.get("output_schema")
        wrapped = False
        if schema is not None:  # a structured call: a forced tool whose input is the answer
            tool, wrapped = anthropic_tool(schema)
            request["tools"], request["tool_choice"] = [tool], {"type": "tool", "name": TOOL_NAME}
            # Not streamed: a forced tool's input arrives as partial-JSON deltas, not text worth showing.
            on_token = None
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
            raise self._error(exc, model) from exc
        text = "".join(block.text for block in response.content if getattr(block, "type", "") == "text")
        if schema is not None:
            # No tool call (a refusal): the text is validated instead, fails, and is sent back.
            text = _tool_answer(response.content, wrapped) or text
        usage = Usage(int(response.usage.input_tokens or 0), int(response.usage.output_tokens or 0))
        return Completion(text, usage, response.model or model, self.name, time.perf_counter() - started, response.id)


def _create_provider(settings: ProviderSettings) -> AnthropicProvider:
    return AnthropicProvider(settings.name, api_key=settings.api_key or "no-key-needed", base_url=settings.base_url,
                             timeout_s=settings.timeout_s, key_env=settings.key_env)


PROVIDER_TYPE = ProviderType(create=_create_provider, default_model="claude-haiku-4-5")


def _tool_answer(content: list[Any], wrapped: bool) -> str | None:
    """The forced tool's input as JSON text (unwrapped when the schema was wrapped), or None without one."""
    for block in content:
        if getattr(block, "type", "") == "tool_use" and getattr(block, "name", "") == TOOL_NAME:
            value = block.input
            if wrapped and isinstance(value, dict) and WRAPPED_KEY in value:
                value = value[WRAPPED_KEY]
            return json.dumps(value, ensure_ascii=False)
    return None
