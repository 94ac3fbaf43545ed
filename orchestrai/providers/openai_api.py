"""OpenAI and every OpenAI-compatible server (Ollama, vLLM, llama.cpp) through the official async SDK."""

from __future__ import annotations

import time
from typing import Any

from ..api import Completion, Message, ProviderSettings, ProviderType, TokenCallback, Usage
from .base import fit_to_signature, provider_params
from .schema_formats import openai_response_format
from .sdk_client import SDKProvider


class OpenAIProvider(SDKProvider):
    """Chat completions over the official `openai` SDK."""

    sdk = "openai"
    client_class = "AsyncOpenAI"

    async def complete(self, messages: list[Message], settings: dict[str, Any], *,
                       on_token: TokenCallback | None = None) -> Completion:
        model = str(settings["model"])
        request = {"model": model, "messages": [{"role": m.role, "content": m.content} for m in messages],
                   **provider_params(settings)}
        schema = settings.get("output_schema")
        if schema is not None:  # a structured call: the API constrains the answer to the schema
            request["response_format"] = openai_response_format(schema)
        started = time.perf_counter()
        try:
            if on_token is None:
                response = await self._create(**request)
                text = response.choices[0].message.content or ""
                usage, raw_id, model = _usage(response.usage), response.id, response.model or model
            else:
                text, usage, raw_id, model = await self._stream(request, on_token)
        except self._sdk.APIError as exc:
            raise self._error(exc, model) from exc
        return Completion(text, usage, model, self.name, time.perf_counter() - started, raw_id)

    async def _stream(self, request: dict[str, Any], on_token: TokenCallback) -> tuple[str, Usage, str | None, str]:
        stream = await self._create(**request, stream=True, stream_options={"include_usage": True})
        parts: list[str] = []
        usage, raw_id, model = Usage(), None, request["model"]
        async for chunk in stream:
            raw_id, model = chunk.id or raw_id, chunk.model or model
            if chunk.usage is not None:
                usage = _usage(chunk.usage)
            for choice in chunk.choices:
                delta = choice.delta.content if choice.delta else None
                if delta:
                    parts.append(delta)
                    on_token(delta)
        return "".join(parts), usage, raw_id, model

    async def _create(self, **request: Any) -> Any:
        create = self._client.chat.completions.create
        return await create(**fit_to_signature(create, request))


def _create_provider(settings: ProviderSettings) -> OpenAIProvider:
    return OpenAIProvider(settings.name, api_key=settings.api_key or "no-key-needed", base_url=settings.base_url,
                          timeout_s=settings.timeout_s, key_env=settings.key_env)


# A self-hosted OpenAI-compatible server (Ollama, llama.cpp) usually needs no key: pool.check_key
# asks for one only when the endpoint is OpenAI's own (no base_url).
PROVIDER_TYPE = ProviderType(create=_create_provider, default_model="gpt-4o-mini")


def _usage(usage: Any) -> Usage:
    if usage is None:
        return Usage()
    return Usage(int(usage.prompt_tokens or 0), int(usage.completion_tokens or 0))
