"""Steps with tools: the tool loop, deny by default, errors back to the model, concurrency, modules and
pipelines as tools, roles. A provider scripted in-process plays the model (the wires over the real SDKs
are tested in tests/test_tool_wires.py)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from conftest import write
from helpers import run_library

from orchestrai.api import Completion, Message, ToolCall, ToolCalled, Usage
from orchestrai.project import Project

TOOLS = '''
import asyncio
from pathlib import Path

BARRIER = {}


def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


def boom(reason: str) -> str:
    """Always fails."""
    raise RuntimeError("exploded: " + reason)


def secret_side_effect(path: str) -> str:
    """Writes a file (a refused call must never get here)."""
    Path(path).write_text("ran")
    return "done"


async def meet(name: str) -> str:
    """Two of these must be in flight at once, or both wait forever (the test's timeout)."""
    event = BARRIER.setdefault(name, asyncio.Event())
    other = BARRIER.setdefault("left" if name == "right" else "right", asyncio.Event())
    event.set()
    await asyncio.wait_for(other.wait(), 5)
    return "met " + name


async def sleepy(seconds: float) -> str:
    """Sleeps."""
    await asyncio.sleep(seconds)
    return "woke"
'''


class ToolModel:
    """Plays a model: round n answers with plan[n] (a list of (tool wire name, arguments)) or, past the
    plan, a text quoting the last tool results."""

    def __init__(self, plan: list[list[tuple[str, Any]]], final: Callable[[list[Message]], str] | None = None) -> None:
        self.name = "openai"
        self.plan = plan
        self.final = final or (lambda messages: "final: " + " | ".join(
            m.content for m in messages if m.role == "tool"))
        self.requests: list[tuple[list[Message], dict[str, Any]]] = []

    async def complete(self, messages: list[Message], settings: dict[str, Any], *, on_token: Any = None) -> Completion:
        self.requests.append((list(messages), dict(settings)))
        rounds = sum(1 for m in messages if m.role == "assistant" and m.tool_calls)
        if rounds < len(self.plan) and settings.get("tools"):
            calls = tuple(ToolCall(f"call-{rounds}-{n}", name, args)
                          for n, (name, args) in enumerate(self.plan[rounds]))
            return Completion("", Usage(5, 5), "gpt-4o-mini", "openai", 0.0, tool_calls=calls)
        return Completion(self.final(messages), Usage(5, 5), "gpt-4o-mini", "openai", 0.0)

    async def aclose(self) -> None:
        return None


class Events:
    events = frozenset({ToolCalled})

    def __init__(self) -> None:
        self.seen: list[ToolCalled] = []

    def on_event(self, event: Any) -> None:
        self.seen.append(event)


def project_with_tools(project: Path, steps: str, header: str = "") -> Path:
    write(project / "tools" / "mathy.py", TOOLS)
    write(project / "system_prompts" / "agent.md", "You are an agent. Use your tools.\n")
    write(project / "system_prompts" / "translator.md", "Translate {{ text }} into {{ language }}.\n")
    return write(project / "agent.yml", header + "pipeline:\n  - {module: start_module, output_name: request}\n"
                 + steps)


def test_two_rounds_of_tool_calls_then_an_answer(project: Path) -> None:
    path = project_with_tools(project, "  - {module: agent, inputs: [request], tools: [add], output_name: answer}\n")
    model = ToolModel([[("add", {"a": 17, "b": 25})], [("add", {"a": 42, "b": 1})]])
    hook = Events()
    result, log = run_library(path, inputs={"request": "sum"}, providers={"openai": model}, hooks=[hook])
    assert result.status == "completed" and result.outputs["answer"] == "final: 42 | 43"
    offered = model.requests[0][1]["tools"]
    assert [t.name for t in offered] == ["add"] and offered[0].parameters["required"] == ["a", "b"]
    assert offered[0].description == "Add two integers."
    record = {r.id: r for r in result.records}["answer"]
    calls = record.details["tool_calls"]
    assert [(c["round"], c["name"], c["arguments"], c["result"]) for c in calls] == [
        (1, "add", {"a": 17, "b": 25}, 42), (2, "add", {"a": 42, "b": 1}, 43)]
    assert record.calls == 3
    assert [(e.name, e.result) for e in hook.seen] == [("add", 42), ("add", 43)]
    logged = json.loads(Path(log.path).read_text())["steps"][1]
    assert any(m.get("tool_calls") for m in logged["messages"]) and any(m["role"] == "tool" for m in logged["messages"])


def test_a_disallowed_tool_is_refused_and_never_runs(project: Path, tmp_path: Path) -> None:
    path = project_with_tools(project, "  - {module: agent, inputs: [request], tools: [add], output_name: answer}\n")
    marker = tmp_path / "side-effect"
    model = ToolModel([[("secret_side_effect", {"path": str(marker)})]])
    result, _ = run_library(path, inputs={"request": "x"}, providers={"openai": model})
    assert result.status == "completed" and not marker.exists()
    [call] = {r.id: r for r in result.records}["answer"].details["tool_calls"]
    assert call["refused"] is True and "tool not allowed" in call["error"]
    assert "tool not allowed" in model.requests[1][0][-1].content  # the model was told


def test_bad_arguments_and_a_raising_tool_go_back_to_the_model(project: Path) -> None:
    path = project_with_tools(project, "  - {module: agent, inputs: [request], tools: [add, boom], output_name: a}\n")
    model = ToolModel([[("add", {"a": "seventeen", "b": 1}), ("boom", {"reason": "why"}), ("add", "not json")]])
    result, _ = run_library(path, inputs={"request": "x"}, providers={"openai": model})
    assert result.status == "completed"
    errors = [c["error"] for c in {r.id: r for r in result.records}["a"].details["tool_calls"]]
    assert errors[0].startswith("bad arguments at $.a:")
    assert errors[1] == "RuntimeError: exploded: why"
    assert errors[2].startswith("the arguments are not a JSON object")


def test_two_calls_in_one_round_run_concurrently(project: Path) -> None:
    path = project_with_tools(project, "  - {module: agent, inputs: [request], tools: [meet], output_name: a}\n")
    model = ToolModel([[("meet", {"name": "left"}), ("meet", {"name": "right"})]])
    result, _ = run_library(path, inputs={"request": "x"}, providers={"openai": model})
    assert result.outputs["a"] == "final: met left | met right"  # sequential calls would have timed out


def test_tool_timeout_and_max_tool_rounds(project: Path) -> None:
    path = project_with_tools(project, "  - {module: agent, inputs: [request], tools: [sleepy, add], "
                              "tool_timeout_s: 0.05, max_tool_rounds: 2, output_name: a}\n")
    model = ToolModel([[("sleepy", {"seconds": 2})], [("add", {"a": 1, "b": 1})], [("add", {"a": 1, "b": 1})]])
    result, _ = run_library(path, inputs={"request": "x"}, providers={"openai": model})
    record = {r.id: r for r in result.records}["a"]
    assert record.details["tool_calls"][0]["error"] == "tool 'sleepy' did not answer within tool_timeout_s=0.05"
    assert record.status == "failed"
    assert "agent.yml:3: step 'a': the model was still calling tools after max_tool_rounds=2" in (record.error or "")


def test_a_module_and_a_sub_pipeline_as_tools(project: Path) -> None:
    write(project / "pipelines" / "research.yml", """
        description: Researches a topic.
        pipeline:
          - {module: start_module, output_name: topic}
          - {module: agent, inputs: [topic], output_name: notes}
        """)
    write(project / "system_prompts" / "translator.md", "Translate {{ text }} into {{ language }}.\n")
    path = project_with_tools(project, "  - module: agent\n    inputs: [request]\n    output_name: a\n    tools:\n"
                              "      - {module: translator}\n"
                              "      - {pipeline: pipelines/research.yml, name: research}\n")
    write(project / "system_prompts" / "translator.md", "Translate {{ text }} into {{ language }}.\n")
    graph = Project.open(None).load(path)
    assert graph is not None
    model = ToolModel([[("translator", {"text": "hello", "language": "French"}), ("research", {"topic": "owls"})]],
                      final=lambda messages: "done")
    result, _ = run_library(path, inputs={"request": "x"}, providers={"openai": model})
    assert result.status == "completed", [(r.id, r.error) for r in result.records]
    offered = {t.name: t for t in model.requests[0][1]["tools"]}
    assert offered["translator"].parameters["required"] == ["language", "text"]
    assert offered["research"].parameters["required"] == ["topic"]
    assert offered["research"].description == "Researches a topic."
    records = {r.id: r for r in result.records}
    assert records["a/translator@0/translator"].parent == "a"
    assert records["a/research@1/notes"].status == "completed"
    calls = records["a"].details["tool_calls"]
    assert all("error" not in c for c in calls), calls


def test_validation_of_tools_and_roles(project: Path) -> None:
    header = """roles:
  worker: {tools: ["mathy_*", add], max_tool_rounds: 3}
  manager: {spawn: [pipelines/research.yml]}
"""
    path = project_with_tools(project, """  - {module: agent, inputs: [request], tools: [ad], output_name: a}
  - {module: agent, inputs: [request], tools: [weather.forecast], output_name: b}
  - {module: agent, inputs: [request], role: worker, tools: [add, boom], output_name: c}
  - {module: agent, inputs: [request], role: boss, output_name: d}
  - {module: agent, inputs: [request], role: manager, tools: [{module: translator}], output_name: e}
  - {module: agent, inputs: [request], tools: [{module: nosuch}], output_name: f}
  - {module: agent, inputs: [request], tools: [add, add], output_name: g}
""", header)
    graph, problems = Project.open(None).check(path)
    text = "\n".join(str(p) for p in problems)
    assert graph is None
    assert "agent.yml:6: step 'a': unknown tool 'ad'\n  hint: did you mean 'add'?" in text
    assert "agent.yml:7: step 'b': tool 'weather.forecast' names MCP server 'weather', which is not configured" in text
    assert "agent.yml:8: step 'c': role 'worker' does not allow tool 'boom'" in text
    assert "agent.yml:9: step 'd': unknown role 'boss'" in text
    assert "agent.yml:10: step 'e': role 'manager' may not spawn 'translator'" in text
    assert "agent.yml:11: step 'f': tool module 'nosuch' does not exist" in text
    assert "agent.yml:12: step 'g': tool 'add' is listed twice" in text


def test_a_tool_whose_signature_has_no_schema_is_a_validation_error(project: Path) -> None:
    write(project / "tools" / "odd.py", "import socket\n\ndef connect(sock: socket.socket) -> str:\n"
          "    return 'x'\n")
    path = project_with_tools(project, "  - {module: agent, inputs: [request], tools: [add], output_name: a}\n")
    graph, problems = Project.open(None).check(path)
    text = "\n".join(str(p) for p in problems)
    assert graph is None and "odd.py:3: tool 'connect': its signature has no JSON Schema" in text


def test_role_budget_is_shared_by_its_steps(project: Path) -> None:
    header = "roles:\n  thrifty: {tools: [add], budget_usd: 0.00001}\n"
    path = project_with_tools(project, "  - {module: agent, inputs: [request], role: thrifty, tools: [add], "
                              "output_name: a}\n", header)
    model = ToolModel([[("add", {"a": 1, "b": 2})]])
    result, _ = run_library(path, inputs={"request": "x"}, providers={"openai": model})
    record = {r.id: r for r in result.records}["a"]
    assert record.status == "failed" and "the budget_usd of its role" in (record.error or "")
    assert not model.requests  # refused before any call


def test_tool_calls_are_shown_live(project: Path) -> None:
    import io

    from rich.console import Console

    from orchestrai.observe.progress import PlainProgress

    path = project_with_tools(project, "  - {module: agent, inputs: [request], tools: [add, boom], output_name: a}\n")
    out = io.StringIO()
    display = PlainProgress(Console(file=out, width=200, color_system=None))
    model = ToolModel([[("add", {"a": 17, "b": 25}), ("boom", {"reason": "no"})]])
    run_library(path, inputs={"request": "x"}, providers={"openai": model}, hooks=[display])
    text = out.getvalue()
    assert "↳ add(a=17, b=25) → 42" in text
    assert "↳ boom(reason=no) ✘ RuntimeError: exploded: no" in text


COUNTER = '''
from pathlib import Path


def bump(path: str) -> str:
    """Counts its runs in a file (its answer does not change, so the next model round can be cached)."""
    file = Path(path)
    file.write_text(str(int(file.read_text()) + 1 if file.exists() else 1))
    return "bumped"


def stable(path: str) -> str:
    """Like bump, but marked cacheable."""
    return bump(path)


stable.cacheable = True
'''


def test_a_rerun_reuses_model_rounds_and_reruns_tools_unless_cacheable(project: Path, tmp_path: Path) -> None:
    write(project / "tools" / "counter.py", COUNTER)
    path = project_with_tools(project, "  - {module: agent, inputs: [request], tools: [bump, stable], "
                              "output_name: a}\n")
    bumps, stables = tmp_path / "bumps", tmp_path / "stables"
    plan = [[("bump", {"path": str(bumps)}), ("stable", {"path": str(stables)})]]
    first_model, second_model = ToolModel(plan), ToolModel(plan)
    run_library(path, inputs={"request": "x"}, providers={"openai": first_model})
    second, _ = run_library(path, inputs={"request": "x"}, providers={"openai": second_model})
    assert len(first_model.requests) == 2 and not second_model.requests  # both rounds from the cache
    assert bumps.read_text() == "2" and stables.read_text() == "1"
    record = {r.id: r for r in second.records}["a"]
    assert record.status == "cached" and record.cache_hits == 2


def test_tools_with_foreach_and_a_structured_final_answer(project: Path) -> None:
    write(project / "system_prompts" / "agent_n.md", "You are an agent. Use your tools on {{ n }}.\n")
    path = project_with_tools(project, """  - module: agent
    inputs: [request]
    output_name: plan
    output_schema: {type: object, properties: {items: {type: array, items: {type: integer}}}, required: [items]}
  - module: agent_n
    foreach: plan.items
    as: n
    tools: [add]
    output_name: sums
    output_schema: {type: object, properties: {total: {type: integer}}, required: [total]}
""")

    def final(messages: list[Message]) -> str:
        results = [m.content for m in messages if m.role == "tool"]
        return json.dumps({"total": int(results[-1])} if results else {"items": [1, 2]})

    model = ToolModel([[("add", {"a": 10, "b": 5})]], final=final)
    result, _ = run_library(path, inputs={"request": "x"}, providers={"openai": model})
    assert result.status == "completed", [(r.id, r.error) for r in result.records]
    assert result.outputs["sums"] == [{"total": 15}, {"total": 15}]
    records = {r.id: r for r in result.records}
    assert records["sums[1]"].details["tool_calls"][0]["result"] == 15
    assert all(settings.get("output_schema") for _, settings in model.requests[1:])


def test_a_step_uses_mcp_tools_from_a_real_stdio_server(project: Path) -> None:
    import sys

    server = Path(__file__).with_name("mcp_weather_server.py")
    write(project / "config.yml", f"""
        mcp_servers:
          weather:
            command: {sys.executable}
            args: [{server}]
        log_dir: logs
        """)
    path = project_with_tools(project, "  - {module: agent, inputs: [request], tools: [weather.forecast, "
                              "weather.fail], output_name: a}\n")
    model = ToolModel([[("weather__forecast", {"city": "Oslo"}), ("weather__fail", {"reason": "because"})]])
    result, _ = run_library(path, config=project / "config.yml", inputs={"request": "x"}, providers={"openai": model})
    assert result.status == "completed", [(r.id, r.error) for r in result.records]
    offered = {t.wire_name: t for t in model.requests[0][1]["tools"]}
    assert offered["weather__forecast"].name == "weather.forecast"
    assert offered["weather__forecast"].description == "The weather forecast for a city."
    calls = {r.id: r for r in result.records}["a"].details["tool_calls"]
    assert calls[0]["name"] == "weather.forecast" and "Sunny in Oslo" in str(calls[0]["result"])
    assert "because" in calls[1]["error"]
