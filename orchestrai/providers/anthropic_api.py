"""Anthropic through the official async SDK (system prompt in `system`, max_tokens required).

Tools and structured outputs. A structured call without tools forces our answer tool
(`structured_output`, whose input is the answer): `tool_choice: {type: tool}`. With real tools too,
the answer tool is offered as one more tool and `tool_choice` is `{type: any}`: the model must call
a tool, and chooses which, so it can call the real ones for as many rounds as it needs and gives
its final answer by calling the answer tool, still shaped by the schema. (`auto` would let it
answer in prose, which the engine would reject and send back: a round wasted.) A call of the answer
tool is the final answer (`Completion.text`, no tool calls); if the model calls real tools in the
same reply, those run first and that early answer is dropped, since it was written before their
results. The engine needs no special final request: it sends the same settings every round.
"""

from __future__ import annotations

import json
import time
from typing import Any

from ..api import Completion, Message, ProviderSettings, ProviderType, TokenCallback, ToolCall, ToolSpec, Usage
from .base import fit_to_signature, offered_tools, provider_params, split_system
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
                                   "messages": anthropic_messages(conversation), **params}
        if system:
            request["system"] = system
        tools = offered_tools(settings)
        if tools:
            request["tools"] = [_tool(t) for t in tools]
        schema = settings.get("output_schema")
        answer_tool, wrapped = None, False
        if schema is not None:  # a structured call: a tool whose input is the answer (module docstring)
            tool, wrapped = anthropic_tool(schema)
            answer_tool = tool["name"] = _answer_tool_name(tools)
            request["tools"] = [*request.get("tools", []), tool]
            request["tool_choice"] = {"type": "any"} if tools else {"type": "tool", "name": answer_tool}
        if "tools" in request:
            # Not streamed: a tool's input arrives as partial-JSON deltas, not text worth showing, and
            # the text before a call is short.
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
        calls = tuple(ToolCall(block.id, block.name, _input(block.input)) for block in response.content
                      if getattr(block, "type", "") == "tool_use" and block.name != answer_tool)
        if answer_tool is not None and not calls:
            # No call of the answer tool (a refusal): the text is validated instead, fails, and is sent back.
            text = _tool_answer(response.content, answer_tool, wrapped) or text
        usage = Usage(int(response.usage.input_tokens or 0), int(response.usage.output_tokens or 0))
        return Completion(text, usage, response.model or model, self.name, time.perf_counter() - started, response.id,
                          tool_calls=calls)


def anthropic_messages(conversation: list[Message]) -> list[dict[str, Any]]:
    """Our messages as the Messages API wants them: an assistant's calls as `tool_use` blocks after its text,
    and each run of `tool` messages as ONE user message of `tool_result` blocks (the API wants every
    result of a turn's calls in the message right after it)."""
    out: list[dict[str, Any]] = []
    results: list[dict[str, Any]] | None = None  # the tool_result blocks of the user message being built
    for message in conversation:
        if message.role == "tool":
            if results is None:
                results = []
                out.append({"role": "user", "content": results})
            results.append({"type": "tool_result", "tool_use_id": message.tool_call_id, "content": message.content})
            continue
        results = None
        if message.role == "assistant" and message.tool_calls:
            blocks: list[dict[str, Any]] = [{"type": "text", "text": message.content}] if message.content else []
            blocks += [{"type": "tool_use", "id": c.id, "name": c.name, "input": _sent_input(c)}
                       for c in message.tool_calls]
            out.append({"role": "assistant", "content": blocks})
        else:
            out.append({"role": message.role, "content": message.content})
    return out


def _sent_input(call: ToolCall) -> dict[str, Any]:
    """A tool_use block's input, which must be an object. Raw-text arguments (from another provider, after a
    fallback) become the object they spell, else {}: the tool's result already told the model they were bad."""
    if isinstance(call.arguments, dict):
        return call.arguments
    try:
        value = json.loads(call.arguments)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _input(value: Any) -> dict[str, Any] | str:
    return dict(value) if isinstance(value, dict) else json.dumps(value, ensure_ascii=False)


def _tool(tool: ToolSpec) -> dict[str, Any]:
    sent: dict[str, Any] = {"name": tool.wire_name, "input_schema": tool.parameters}
    if tool.description:
        sent["description"] = tool.description
    return sent


def _answer_tool_name(tools: list[ToolSpec]) -> str:
    """`structured_output`, unless a real tool has that wire name: then a variant no tool has."""
    taken = {t.wire_name for t in tools}
    name, n = TOOL_NAME, 1
    while name in taken:
        name, n = f"{TOOL_NAME}_{n}", n + 1
    return name


def _create_provider(settings: ProviderSettings) -> AnthropicProvider:
    return AnthropicProvider(settings.name, api_key=settings.api_key or "no-key-needed", base_url=settings.base_url,
                             timeout_s=settings.timeout_s, key_env=settings.key_env)


PROVIDER_TYPE = ProviderType(create=_create_provider, default_model="claude-haiku-4-5")


def _tool_answer(content: list[Any], name: str, wrapped: bool) -> str | None:
    """The answer tool's input as JSON text (unwrapped when the schema was wrapped), or None without one."""
    for block in content:
        if getattr(block, "type", "") == "tool_use" and getattr(block, "name", "") == name:
            value = block.input
            if wrapped and isinstance(value, dict) and WRAPPED_KEY in value:
                value = value[WRAPPED_KEY]
            return json.dumps(value, ensure_ascii=False)
    return None
