"""OpenAI and every OpenAI-compatible server (Ollama, vLLM, llama.cpp) through the official async SDK."""

from __future__ import annotations

import json
import secrets
import time
from typing import Any

from ..api import Completion, Message, ProviderSettings, ProviderType, TokenCallback, ToolCall, ToolSpec, Usage
from .base import fit_to_signature, offered_tools, parse_arguments, provider_params
from .schema_formats import openai_response_format
from .sdk_client import SDKProvider

_Answer = tuple[str, tuple[ToolCall, ...], Usage, str | None, str]  # text, calls, usage, id, model


class OpenAIProvider(SDKProvider):
    """Chat completions over the official `openai` SDK."""

    sdk = "openai"
    client_class = "AsyncOpenAI"

    async def complete(self, messages: list[Message], settings: dict[str, Any], *,
                       on_token: TokenCallback | None = None) -> Completion:
        model = str(settings["model"])
        request = {"model": model, "messages": [_message(m) for m in messages], **provider_params(settings)}
        tools = offered_tools(settings)
        if tools:
            request["tools"] = [_tool(t) for t in tools]
        schema = settings.get("output_schema")
        if schema is not None:
            # A structured call: the API constrains the answer to the schema. With tools too, the
            # model may still call them; only its final answer (content) follows the schema.
            request["response_format"] = openai_response_format(schema)
        started = time.perf_counter()
        try:
            if on_token is None:
                text, calls, usage, raw_id, model = await self._whole(request)
            else:
                text, calls, usage, raw_id, model = await self._stream(request, on_token)
        except self._sdk.APIError as exc:
            raise self._error(exc, model) from exc
        return Completion(text, usage, model, self.name, time.perf_counter() - started, raw_id, tool_calls=calls)

    async def _whole(self, request: dict[str, Any]) -> _Answer:
        response = await self._create(**request)
        message = response.choices[0].message
        calls = []
        for call in message.tool_calls or ():
            function = getattr(call, "function", None)  # a "custom" tool call has none: we never offer those
            if function is not None:
                arguments = parse_arguments(function.arguments or "")
                calls.append(ToolCall(call.id or _new_id(), function.name or "", arguments))
        model = response.model or request["model"]
        return message.content or "", tuple(calls), _usage(response.usage), response.id, model

    async def _stream(self, request: dict[str, Any], on_token: TokenCallback) -> _Answer:
        # Streamed with tools too: the text before (or instead of) the calls is shown as it comes, and a
        # call arrives as deltas that _CallDeltas puts together.
        stream = await self._create(**request, stream=True, stream_options={"include_usage": True})
        parts: list[str] = []
        calls = _CallDeltas()
        usage, raw_id, model = Usage(), None, request["model"]
        async for chunk in stream:
            raw_id, model = chunk.id or raw_id, chunk.model or model
            if chunk.usage is not None:
                usage = _usage(chunk.usage)
            for choice in chunk.choices:
                if not choice.delta:
                    continue
                delta = choice.delta.content
                if delta:
                    parts.append(delta)
                    on_token(delta)
                calls.add(choice.delta.tool_calls)
        return "".join(parts), calls.finish(), usage, raw_id, model

    async def _create(self, **request: Any) -> Any:
        create = self._client.chat.completions.create
        return await create(**fit_to_signature(create, request))


class _CallDeltas:
    """Tool calls put together from streamed deltas, by their `index`."""

    def __init__(self) -> None:
        self.calls: dict[int, dict[str, str]] = {}

    def add(self, deltas: Any) -> None:
        for delta in deltas or ():
            call = self.calls.setdefault(int(delta.index or 0), {"id": "", "name": "", "arguments": ""})
            # The id and the name come whole in a call's first delta (OpenAI, vLLM, llama.cpp, Ollama); some
            # servers repeat them in later deltas, so the first is kept. The arguments come in pieces.
            call["id"] = call["id"] or (delta.id or "")
            function = getattr(delta, "function", None)
            if function is not None:
                call["name"] = call["name"] or (function.name or "")
                call["arguments"] += function.arguments or ""

    def finish(self) -> tuple[ToolCall, ...]:
        return tuple(ToolCall(c["id"] or _new_id(), c["name"], parse_arguments(c["arguments"]))
                     for _, c in sorted(self.calls.items()))


def _message(message: Message) -> dict[str, Any]:
    if message.role == "tool":
        return {"role": "tool", "tool_call_id": message.tool_call_id, "content": message.content}
    if message.role == "assistant" and message.tool_calls:
        calls = [{"id": c.id, "type": "function", "function": {"name": c.name, "arguments": _arguments_text(c)}}
                 for c in message.tool_calls]
        return {"role": "assistant", "content": message.content or None, "tool_calls": calls}
    return {"role": message.role, "content": message.content}


def _arguments_text(call: ToolCall) -> str:
    # Raw text (arguments that were not a JSON object) goes back as the model sent it.
    return call.arguments if isinstance(call.arguments, str) else json.dumps(call.arguments, ensure_ascii=False)


def _tool(tool: ToolSpec) -> dict[str, Any]:
    function: dict[str, Any] = {"name": tool.wire_name, "parameters": tool.parameters}
    if tool.description:
        function["description"] = tool.description
    return {"type": "function", "function": function}


def _new_id() -> str:
    """An id for a call a server sent without one: the engine matches results to calls by id."""
    return f"call_{secrets.token_hex(8)}"


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
