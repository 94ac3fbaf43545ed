"""Tool calls on the wire, for tests/fake_llm_server.py (standard library only).

What a scripted tool call looks like as an OpenAI ``tool_calls`` entry or an Anthropic ``tool_use``
block (streamed or not), what a request offered (``tools``) and sent back (tool results, the
assistant's earlier calls), and the checks the real APIs make on a tool conversation, with their
error messages, so a malformed conversation fails a test with a 400 as it would in production.
The public API is documented in fake_llm_server's docstring.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

TOOL_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")  # what both APIs accept as a tool's name
_ARGUMENT_PIECE = 8  # characters of arguments JSON per streamed delta: several deltas per call


@dataclass(frozen=True)
class ScriptedToolCall:
    """One call of a scripted reply: ``arguments`` a dict (sent as JSON) or a str (OpenAI: sent verbatim
    as the ``arguments`` text, to script malformed JSON; Anthropic: must be a JSON object's text)."""

    name: str
    arguments: Any
    id: str | None = None  # None: the server makes one (``call_...`` / ``toolu_01...``)


@dataclass(frozen=True)
class ToolResult:
    """A tool result a request carried: an OpenAI ``role: tool`` message or an Anthropic ``tool_result`` block."""

    tool_call_id: str | None
    content: str  # as text (a list of text blocks joined)
    is_error: bool | None = None  # Anthropic's flag; None when absent (always, on OpenAI)
    name: str | None = None  # OpenAI's optional ``name`` of a tool message


@dataclass(frozen=True)
class SentToolCall:
    """A tool call an assistant message in a request carried (the model's earlier call, sent back)."""

    id: str | None
    name: str | None
    arguments: Any  # OpenAI: parsed from its JSON text (the raw text when it is not JSON); Anthropic: ``input``


def scripted_calls(calls: Iterable[Any]) -> tuple[ScriptedToolCall, ...]:
    """Normalize ``(name, arguments)``, ``(name, arguments, id)`` or ScriptedToolCall entries."""
    out = []
    for call in calls:
        if isinstance(call, ScriptedToolCall):
            out.append(call)
            continue
        name, arguments, *rest = call
        if not isinstance(arguments, (dict, str)):
            raise TypeError(f"tool call arguments must be a dict or a str, not {type(arguments).__name__}")
        out.append(ScriptedToolCall(str(name), arguments, str(rest[0]) if rest and rest[0] is not None else None))
    if not out:
        raise ValueError("queue_tool_calls needs at least one call")
    return tuple(out)


def arguments_text(call: ScriptedToolCall) -> str:
    return call.arguments if isinstance(call.arguments, str) else json.dumps(call.arguments)


def anthropic_input(call: ScriptedToolCall) -> dict:
    """A tool_use block's ``input``: always an object on that API."""
    if isinstance(call.arguments, dict):
        return call.arguments
    try:
        value = json.loads(call.arguments)
    except ValueError:
        value = None
    if not isinstance(value, dict):
        raise ValueError(f"fake server: Anthropic tool_use input must be a JSON object; {call.name!r} was "
                         f"scripted with {call.arguments!r}")
    return value


# ---------------------------------------------------------------- replies


def openai_tool_calls(calls: list[tuple[str, ScriptedToolCall]]) -> list[dict]:
    """The ``message.tool_calls`` of a non-streamed chat.completion."""
    return [{"id": call_id, "type": "function", "function": {"name": call.name, "arguments": arguments_text(call)}}
            for call_id, call in calls]


def openai_tool_deltas(calls: list[tuple[str, ScriptedToolCall]]) -> list[dict]:
    """The ``delta``s that stream the calls, as OpenAI sends them: per call, one delta with its index, id,
    type, name and empty arguments, then the arguments text in pieces carrying only the index."""
    deltas = []
    for index, (call_id, call) in enumerate(calls):
        deltas.append({"tool_calls": [{"index": index, "id": call_id, "type": "function",
                                       "function": {"name": call.name, "arguments": ""}}]})
        text = arguments_text(call)
        for start in range(0, len(text), _ARGUMENT_PIECE):
            piece = text[start:start + _ARGUMENT_PIECE]
            deltas.append({"tool_calls": [{"index": index, "function": {"arguments": piece}}]})
    return deltas


def anthropic_blocks(text: str, calls: list[tuple[str, ScriptedToolCall]]) -> list[dict]:
    """The ``content`` of a message: a text block when there is text, then one tool_use block per call."""
    blocks: list[dict] = [{"type": "text", "text": text}] if text else []
    blocks += [{"type": "tool_use", "id": call_id, "name": call.name, "input": anthropic_input(call)}
               for call_id, call in calls]
    return blocks


def anthropic_tool_use_events(index: int, block: dict) -> list[tuple[str, dict]]:
    """The stream events of one tool_use block: start (with an empty input), input_json_delta pieces, stop."""
    start = {**block, "input": {}}
    events = [("content_block_start", {"type": "content_block_start", "index": index, "content_block": start})]
    text = json.dumps(block["input"])
    for begin in range(0, len(text), _ARGUMENT_PIECE):
        delta = {"type": "input_json_delta", "partial_json": text[begin:begin + _ARGUMENT_PIECE]}
        events.append(("content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta}))
    events.append(("content_block_stop", {"type": "content_block_stop", "index": index}))
    return events


# ---------------------------------------------------------------- what a request carried


def offered_tool_names(api: str | None, tools: list) -> list[str]:
    names = []
    for tool in tools:
        if not isinstance(tool, dict):
            continue
        source = tool.get("function") if api == "openai" else tool
        if isinstance(source, dict) and isinstance(source.get("name"), str):
            names.append(source["name"])
    return names


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict) and isinstance(p.get("text"), str))
    return ""


def tool_results(api: str | None, messages: list) -> list[ToolResult]:
    results = []
    for message in messages:
        if not isinstance(message, dict):
            continue
        if api == "openai" and message.get("role") == "tool":
            results.append(ToolResult(message.get("tool_call_id"), _text(message.get("content")),
                                      name=message.get("name")))
        elif api == "anthropic" and message.get("role") == "user" and isinstance(message.get("content"), list):
            results += [ToolResult(block.get("tool_use_id"), _text(block.get("content")), block.get("is_error"))
                        for _, block in _blocks(message, "tool_result")]
    return results


def sent_tool_calls(api: str | None, messages: list) -> list[SentToolCall]:
    calls = []
    for message in messages:
        if not isinstance(message, dict) or message.get("role") != "assistant":
            continue
        if api == "openai":
            for call in message.get("tool_calls") or []:
                function = call.get("function") or {}
                calls.append(SentToolCall(call.get("id"), function.get("name"), _parsed(function.get("arguments"))))
        elif isinstance(message.get("content"), list):
            calls += [SentToolCall(block.get("id"), block.get("name"), block.get("input"))
                      for block in message["content"] if isinstance(block, dict) and block.get("type") == "tool_use"]
    return calls


def _parsed(arguments: Any) -> Any:
    if not isinstance(arguments, str):
        return arguments
    try:
        return json.loads(arguments)
    except ValueError:
        return arguments


# ---------------------------------------------------------------- the APIs' checks


def tool_problem(api: str, body: dict) -> str | None:
    """The 400 message the real API gives a malformed tool definition or tool conversation, or None."""
    tools = body.get("tools")
    if tools is not None:
        if not isinstance(tools, list):
            return "tools: Input should be a valid list" if api == "anthropic" else "Invalid type for 'tools'."
        problem = (_openai_tool_problem if api == "openai" else _anthropic_tool_problem)(tools)
        if problem:
            return problem
    messages = [m for m in body.get("messages") or [] if isinstance(m, dict)]
    return _openai_conversation_problem(messages) if api == "openai" else _anthropic_conversation_problem(messages)


def _openai_tool_problem(tools: list) -> str | None:
    for i, tool in enumerate(tools):
        function = tool.get("function") if isinstance(tool, dict) else None
        if not isinstance(tool, dict) or tool.get("type") != "function" or not isinstance(function, dict):
            return f"Missing required parameter: 'tools[{i}].function'."
        if not TOOL_NAME.match(str(function.get("name", ""))):
            return (f"Invalid 'tools[{i}].function.name': string does not match pattern. Expected a string that "
                    "matches the pattern '^[a-zA-Z0-9_-]+$'.")
    return None


def _anthropic_tool_problem(tools: list) -> str | None:
    for i, tool in enumerate(tools):
        if not isinstance(tool, dict) or not isinstance(tool.get("input_schema"), dict):
            return f"tools.{i}.custom.input_schema: Field required"
        if not TOOL_NAME.match(str(tool.get("name", ""))):
            return f"tools.{i}.custom.name: String should match pattern '^[a-zA-Z0-9_-]{{1,64}}$'"
    return None


def _openai_conversation_problem(messages: list[dict]) -> str | None:
    waiting: list[str] = []  # ids of the last assistant message's calls still without a tool message
    answerable: set[str] = set()
    for i, message in enumerate(messages):
        role = message.get("role")
        if role == "tool":
            call_id = message.get("tool_call_id")
            if not isinstance(call_id, str):
                return f"Missing required parameter: 'messages[{i}].tool_call_id'."
            if call_id not in answerable:
                return ("Invalid parameter: messages with role 'tool' must be a response to a preceeding message "
                        "with 'tool_calls'.")
            waiting = [w for w in waiting if w != call_id]
            continue
        if waiting:
            return ("An assistant message with 'tool_calls' must be followed by tool messages responding to each "
                    f"'tool_call_id'. The following tool_call_ids did not have response messages: {', '.join(waiting)}")
        answerable, waiting = set(), []
        if role == "assistant" and message.get("tool_calls"):
            for j, call in enumerate(message["tool_calls"]):
                function = call.get("function") if isinstance(call, dict) else None
                if not isinstance(call, dict) or not isinstance(call.get("id"), str) or not isinstance(function, dict):
                    return f"Missing required parameter: 'messages[{i}].tool_calls[{j}].id'."
                if not isinstance(function.get("arguments"), str):
                    return (f"Invalid type for 'messages[{i}].tool_calls[{j}].function.arguments': expected a "
                            "string, but got an object instead.")
                answerable.add(call["id"])
                waiting.append(call["id"])
    if waiting:
        return ("An assistant message with 'tool_calls' must be followed by tool messages responding to each "
                f"'tool_call_id'. The following tool_call_ids did not have response messages: {', '.join(waiting)}")
    return None


def _blocks(message: dict, kind: str) -> list[tuple[int, dict]]:
    content = message.get("content")
    if not isinstance(content, list):
        return []
    return [(j, b) for j, b in enumerate(content) if isinstance(b, dict) and b.get("type") == kind]


def _anthropic_conversation_problem(messages: list[dict]) -> str | None:
    previous_uses: set[str] = set()
    for i, message in enumerate(messages):
        if message.get("role") not in ("user", "assistant"):
            return f"messages.{i}.role: Input should be 'user' or 'assistant'"
        results = {b.get("tool_use_id") for _, b in _blocks(message, "tool_result")}
        for j, block in _blocks(message, "tool_result"):
            if block.get("tool_use_id") not in previous_uses:
                return (f"messages.{i}.content.{j}: unexpected `tool_use_id` found in `tool_result` blocks: "
                        f"{block.get('tool_use_id')}. Each `tool_result` block must have a corresponding `tool_use` "
                        "block in the previous message.")
        missing = sorted(previous_uses - results)
        if missing:
            return (f"messages.{i - 1}: `tool_use` ids were found without `tool_result` blocks immediately after: "
                    f"{', '.join(missing)}. Each `tool_use` block must have a corresponding `tool_result` block in "
                    "the next message.")
        previous_uses = set()
        if message["role"] == "assistant":
            for j, block in _blocks(message, "tool_use"):
                if not isinstance(block.get("input"), dict):
                    return f"messages.{i}.content.{j}.tool_use.input: Input should be a valid dictionary"
                previous_uses.add(str(block.get("id")))
    return None  # calls in a last assistant turn (a prefill) are not checked: nothing follows them yet
