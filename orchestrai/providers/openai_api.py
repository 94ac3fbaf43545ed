"""OpenAI and every OpenAI-compatible server (Ollama, vLLM, llama.cpp) through the official async SDK."""

from __future__ import annotations

import time
from typing import Any

from ..errors import MissingExtraError
from .base import Completion, Message, TokenCallback, Usage, fit_to_signature, provider_params
from .sdk_errors import translate


class OpenAIProvider:
    """Chat completions over the official `openai` SDK."""

    def __init__(self, name: str, *, api_key: str, base_url: str | None, timeout_s: float, key_env: str | None) -> None:
        try:
            import openai
        except ImportError as exc:  # pragma: no cover - a dependency of the package
            raise MissingExtraError("the openai package is not installed", hint="pip install openai") from exc
        self.name = name
        self._sdk = openai
        self._key_env = key_env
        # Retries are ours (recorded in the memory log), so the SDK must not retry behind our back.
        self._client = openai.AsyncOpenAI(api_key=api_key, base_url=base_url, timeout=timeout_s, max_retries=0)
        self.base_url = str(self._client.base_url)

    async def complete(self, messages: list[Message], settings: dict[str, Any], *,
                       on_token: TokenCallback | None = None) -> Completion:
        model = str(settings["model"])
        request = {"model": model, "messages": [{"role": m.role, "content": m.content} for m in messages],
                   **provider_params(settings)}
        started = time.perf_counter()
        try:
            if on_token is None:
                response = await self._create(**request)
                text = response.choices[0].message.content or ""
                usage, raw_id, model = _usage(response.usage), response.id, response.model or model
            else:
                text, usage, raw_id, model = await self._stream(request, on_token)
        except self._sdk.APIError as exc:
            raise translate(exc, provider=self.name, model=model, base_url=self.base_url, key_env=self._key_env) from exc
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

    async def aclose(self) -> None:
        await self._client.close()


def _usage(usage: Any) -> Usage:
    if usage is None:
        return Usage()
    return Usage(int(usage.prompt_tokens or 0), int(usage.completion_tokens or 0))
