"""Tool calls on the local model, through llama-cpp-python's `chatml-function-calling` chat handler.

The handler lists the tools in the system prompt (ChatML, the format of SmolLM2 and Qwen) and lets
a grammar choose between `message:` and `functions.<name>:`; a chosen call's arguments are sampled
under a grammar made from the tool's parameters schema, so they are always schema-valid JSON.

What the bundled SmolLM2-135M does (tests/test_tool_wires.py runs it): asked "What is 17 + 25? Use
the add tool." it calls `add({"a": 17, "b": 25})`, and "What is the weather in Paris?" calls the
weather tool with `{"city": "Paris"}`; but once the results are in the conversation it never
chooses to answer: it asks for a call again (the same one, or the same tool with an empty city).
So a call that repeats one already answered (same tool, same arguments) is not sent to the engine:
when nothing new is asked for, the model answers in text from the results ("The result of the
addition operation is 42."), with its own chat template (and the output_schema grammar for a
structured step). A model that asks for new calls gets as many rounds as the step allows.

Two gaps of the handler are filled here: its template has no `tool` role (results are given as
user messages) and it shows tools only under a system message (one is added when there is none).
Its own text answers are always empty in this version (its `message:` branch samples under a
grammar that only allows another call or the end), which is why the text comes from `generate`.
"""

from __future__ import annotations

import json
import threading
from typing import Any

from ..api import Message, ToolCall, ToolSpec, Usage
from ..errors import ProviderError
from .base import parse_arguments

HANDLER = "chatml-function-calling"
DEFAULT_SYSTEM = "You are a helpful assistant."
# The handler's create_completion parameters among our call options (seed is set on the model).
HANDLER_OPTIONS = frozenset({"temperature", "top_p", "top_k", "min_p", "typical_p", "repeat_penalty",
                             "frequency_penalty", "presence_penalty", "tfs_z", "mirostat_mode", "mirostat_tau",
                             "mirostat_eta", "stop"})


class _Stopped(Exception):
    """Raised out of the handler: the call was cancelled, or its calls ran out of tokens."""


class _Bounded:
    """The Llama object as the handler sees it: every completion it runs is bounded by what is left of
    max_tokens and stops at the next token when the call is cancelled. (The handler samples a call's
    arguments with no token limit and may chain calls without end; a logits processor cannot stop it,
    as an exception raised there is swallowed by the ctypes callback that runs it.)"""

    def __init__(self, llm: Any, budget: int, cancel: threading.Event) -> None:
        self.llm, self.left, self.cancel = llm, budget, cancel
        self.verbose = llm.verbose
        self.usage = Usage()

    def create_completion(self, **request: Any) -> Any:
        from llama_cpp import StoppingCriteriaList

        if self.left <= 0:  # never 0 or less to llama.cpp: that means "up to the context size"
            raise _Stopped("tokens")
        request["max_tokens"] = min(int(request.get("max_tokens") or self.left), self.left)
        request["stopping_criteria"] = StoppingCriteriaList([lambda tokens, logits: self.cancel.is_set()])
        result = self.llm.create_completion(**request)
        used = result.get("usage") or {}
        self.left -= int(used.get("completion_tokens") or 0)
        self.usage = Usage(max(self.usage.input_tokens, int(used.get("prompt_tokens") or 0)),
                           self.usage.output_tokens + int(used.get("completion_tokens") or 0))
        if self.cancel.is_set():
            raise _Stopped("cancelled")
        return result


def choose_calls(llm: Any, messages: list[Message], tools: list[ToolSpec], options: dict[str, Any],
                 cancel: threading.Event) -> tuple[tuple[ToolCall, ...], Usage]:
    """The calls the model asks for (none: it would rather answer), and the tokens that took.
    Runs in the worker thread that holds the model."""
    from llama_cpp import llama_chat_format

    try:
        handler: Any = llama_chat_format.get_chat_completion_handler(HANDLER)
    except Exception as exc:  # noqa: BLE001 - the registry's own exception class varies between versions
        raise ProviderError(f"this llama-cpp-python has no {HANDLER!r} chat format, so the local model cannot call "
                            f"tools ({exc})", kind="bad_request",
                            hint="upgrade llama-cpp-python, or give the step an openai or anthropic model") from None
    budget = int(options.get("max_tokens") or 512)
    bounded = _Bounded(llm, budget, cancel)
    if options.get("seed") is not None:
        llm.set_seed(int(options["seed"]))
    sampling = {k: v for k, v in options.items() if k in HANDLER_OPTIONS}
    try:
        result = handler(llama=bounded, messages=handler_messages(messages), tools=[_tool(t) for t in tools],
                         tool_choice="auto", **sampling)
    except _Stopped:
        if cancel.is_set():
            return (), bounded.usage
        raise ProviderError(f"the local model's tool calls ran past max_tokens ({budget})",
                            kind="bad_request", hint="raise max_tokens in model_config") from None
    except (RuntimeError, ValueError) as exc:  # the prompt does not fit the context, or llama.cpp failed
        raise ProviderError(f"the local model failed choosing tool calls: {exc}", kind="bad_request",
                            hint="raise n_ctx in model_config, or offer fewer tools") from None
    message = result["choices"][0]["message"]
    calls = tuple(ToolCall("", call["function"]["name"], parse_arguments(call["function"].get("arguments") or ""))
                  for call in message.get("tool_calls") or [])  # ids: see `numbered`
    return calls, bounded.usage


def new_calls(calls: tuple[ToolCall, ...], messages: list[Message]) -> tuple[ToolCall, ...]:
    """The calls that do not repeat one already answered in the conversation (same tool, same arguments)."""
    answered_ids = {m.tool_call_id for m in messages if m.role == "tool"}
    answered = {_key(c) for m in messages if m.role == "assistant" for c in m.tool_calls or () if c.id in answered_ids}
    return tuple(c for c in calls if _key(c) not in answered)


def numbered(calls: tuple[ToolCall, ...], messages: list[Message]) -> tuple[ToolCall, ...]:
    """The calls with short ids unique in the conversation: `local-call-<round>-<n>`."""
    round_ = 1 + sum(1 for m in messages if m.role == "assistant" and m.tool_calls)
    return tuple(ToolCall(f"local-call-{round_}-{n}", c.name, c.arguments) for n, c in enumerate(calls, start=1))


def plain_messages(messages: list[Message]) -> list[Message]:
    """The conversation for the model's own chat template, which knows no tool calls: an assistant's calls
    as a line of text, each run of results as one user message."""
    out: list[Message] = []
    in_results = False
    for message in messages:
        if message.role == "tool":
            if in_results:
                out[-1] = Message("user", f"{out[-1].content}\n{_result_line(message)}")
            else:
                out.append(Message("user", _result_line(message)))
            in_results = True
            continue
        in_results = False
        if message.role == "assistant" and message.tool_calls:
            asked = "Calling " + ", ".join(f"{c.name}({_arguments_text(c)})" for c in message.tool_calls)
            out.append(Message("assistant", f"{message.content}\n{asked}" if message.content else asked))
        else:
            out.append(Message(message.role, message.content))
    return out


def handler_messages(messages: list[Message]) -> list[dict[str, Any]]:
    """The conversation for the handler's template: one system message first (where it lists the tools),
    the assistants' calls in its own form, tool results as user messages."""
    system = "\n\n".join(m.content for m in messages if m.role == "system") or DEFAULT_SYSTEM
    out: list[dict[str, Any]] = [{"role": "system", "content": system}]
    in_results = False
    for message in messages:
        if message.role == "tool":
            if in_results:
                out[-1]["content"] += "\n" + _result_line(message)
            else:
                out.append({"role": "user", "content": _result_line(message)})
            in_results = True
            continue
        in_results = False
        if message.role == "assistant" and message.tool_calls:
            calls = [{"id": c.id, "type": "function", "function": {"name": c.name, "arguments": _arguments_text(c)}}
                     for c in message.tool_calls]
            out.append({"role": "assistant", "content": message.content or None, "tool_calls": calls})
        elif message.role != "system":
            out.append({"role": message.role, "content": message.content})
    return out


def _result_line(message: Message) -> str:
    return f"Result of {message.name or 'the tool'}: {message.content}"


def _tool(tool: ToolSpec) -> dict[str, Any]:
    # The handler shows only a tool's parameters schema: the description goes in there.
    parameters = {**tool.parameters, "description": tool.description} if tool.description else tool.parameters
    return {"type": "function", "function": {"name": tool.wire_name, "parameters": parameters}}


def _key(call: ToolCall) -> tuple[str, str]:
    return call.name, _arguments_text(call, sort_keys=True)


def _arguments_text(call: ToolCall, sort_keys: bool = False) -> str:
    if isinstance(call.arguments, str):
        return call.arguments
    return json.dumps(call.arguments, ensure_ascii=False, sort_keys=sort_keys)
