"""The tool loop of a step with `tools:`: call the model with its tools, run the calls it asks for,
send the results back, until it answers or `max_tool_rounds` is reached.

Deny by default: the model is offered only the step's tools, and a call to any other name is
refused (the model is told so), never run, and recorded. Arguments are checked against the tool's
schema before it runs; a bad argument, a tool that raises or times out goes back to the model as an
error result. Each round is one normal call (cache, budget, rate limits, retries, fallbacks).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from .. import schemas
from ..api import Completion, Message, ToolCall, ToolCalled, ToolSpec
from ..errors import ModuleError, ToolError

Runner = Callable[[Any, dict[str, Any], int], Awaitable[Any]]  # (StepContext, arguments, call number) -> result
Call = Callable[[list[Message], dict[str, Any]], Coroutine[Any, Any, Completion]]

RESULT_EXCERPT = 2000  # characters of a result kept in the log's details.tool_calls


@dataclass
class Toolbox:
    """The tools one step offers: specs by wire name and how each runs."""

    specs: dict[str, ToolSpec]  # wire name -> spec
    runners: dict[str, Runner]
    cacheable: frozenset[str] = frozenset()  # wire names whose results the call cache may answer

    @property
    def offered(self) -> list[ToolSpec]:
        return list(self.specs.values())


async def run_tool_loop(ctx: Any, toolbox: Toolbox, messages: list[Message], overrides: dict[str, Any],
                        call: Call, max_rounds: int, timeout_s: float | None) -> Completion:
    """The model's final answer after its tool calls; ModuleError when it still calls tools after max_rounds."""
    conversation = list(messages)
    settings = {**overrides, "tools": toolbox.offered}
    calls: list[dict[str, Any]] = ctx.record.details.setdefault("tool_calls", [])
    for round_number in range(1, max_rounds + 1):
        completion = await call(conversation, settings)
        if not completion.tool_calls:
            return completion
        asked = Message("assistant", completion.text, tool_calls=list(completion.tool_calls))
        results = await asyncio.gather(*(_run_one(ctx, toolbox, tool_call, round_number, len(calls) + offset,
                                                  timeout_s) for offset, tool_call in
                                         enumerate(completion.tool_calls)))
        answers = []
        for tool_call, (entry, text) in zip(completion.tool_calls, results, strict=True):
            calls.append(entry)
            answers.append(Message("tool", text, tool_call_id=tool_call.id, name=tool_call.name))
        conversation += [asked, *answers]
        ctx.record.messages.extend([_logged(message) for message in (asked, *answers)])
    step = ctx.step
    raise ModuleError(f"{step.location}: step {step.id!r}: the model was still calling tools after "
                      f"max_tool_rounds={max_rounds} rounds",
                      hint="raise max_tool_rounds, or tell the model in the prompt when to stop and answer")


async def _run_one(ctx: Any, toolbox: Toolbox, tool_call: ToolCall, round_number: int, number: int,
                   timeout_s: float | None) -> tuple[dict[str, Any], str]:
    """One call: its log entry and the text sent back to the model."""
    spec = toolbox.specs.get(tool_call.name)
    name = spec.name if spec is not None else tool_call.name
    entry: dict[str, Any] = {"round": round_number, "id": tool_call.id, "name": name,
                             "arguments": tool_call.arguments}
    started = time.monotonic()
    result: Any = None
    error: str | None = None
    if spec is None:
        error = f"tool not allowed: {tool_call.name!r} is not one of this step's tools"
        entry["refused"] = True
    elif not isinstance(tool_call.arguments, dict):
        error = f"the arguments are not a JSON object: {str(tool_call.arguments)[:200]}"
    elif (issue := schemas.validate(tool_call.arguments, spec.parameters)) is not None:
        error = f"bad arguments at {issue.json_path}: {issue.message}"
    else:
        try:
            result = await _call_tool(ctx, toolbox, spec, tool_call.arguments, number, timeout_s)
        except ToolError as exc:
            error = ctx.redact(exc.message)
        except TimeoutError:
            error = f"tool {name!r} did not answer within tool_timeout_s={timeout_s:g}"
        except Exception as exc:  # noqa: BLE001 - a tool that raises answers the model with the error
            error = ctx.redact(f"{type(exc).__name__}: {exc}")
    duration = round(time.monotonic() - started, 4)
    entry.update({"error": error} if error is not None else {"result": _excerpt(result)})
    entry["duration_s"] = duration
    ctx.run.announce_tool(ToolCalled(ctx.record.id, name, tool_call.arguments, result, error, duration,
                                     bool(entry.get("refused"))))
    text = json.dumps({"error": error}) if error is not None else _as_text(result)
    return entry, text


async def _call_tool(ctx: Any, toolbox: Toolbox, spec: ToolSpec, arguments: dict[str, Any], number: int,
                     timeout_s: float | None) -> Any:
    cache = ctx.run.cache if spec.wire_name in toolbox.cacheable and ctx.step.cache else None
    key = None
    if cache is not None:
        from .cache import tool_cache_key

        key = tool_cache_key(spec.name, arguments)
        hit = cache.get(key)
        if hit is not None:
            return json.loads(hit.text)
    work = toolbox.runners[spec.wire_name](ctx, arguments, number)
    result = await (asyncio.wait_for(work, timeout_s) if timeout_s else work)
    if cache is not None and key is not None:
        cache.put_text(key, json.dumps(result, default=str))
    return result


def _as_text(result: Any) -> str:
    return result if isinstance(result, str) else json.dumps(result, default=str)


def _excerpt(result: Any) -> Any:
    if isinstance(result, str) and len(result) > RESULT_EXCERPT:
        return result[:RESULT_EXCERPT] + "…"
    return result


def _logged(message: Message) -> dict[str, Any]:
    entry: dict[str, Any] = {"role": message.role, "content": message.content}
    if message.tool_calls:
        entry["tool_calls"] = [{"id": c.id, "name": c.name, "arguments": c.arguments} for c in message.tool_calls]
    if message.tool_call_id is not None:
        entry["tool_call_id"] = message.tool_call_id
    return entry
