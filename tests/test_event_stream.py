"""`orchestrai run --events FILE|-` and `orchestrai.EventStream`: every event as a JSON line, in order,
complete (fan-out items, loop iterations, tool calls), flushed as it happens (read while the run is held
on the loopback server), valid against docs/events.schema.json, and never carrying a configured key."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from conftest import REPO, write
from fake_llm_server import FakeLLMServer
from helpers import run_library
from test_decisions import TOPICS, fanout_pipeline, loop_pipeline, queue_plan

from orchestrai import EventStream

SCHEMA = json.loads((REPO / "docs" / "events.schema.json").read_text(encoding="utf-8"))
VALIDATOR = jsonschema.Draft202012Validator(SCHEMA, format_checker=jsonschema.FormatChecker())
ENDS = ("step_finished", "step_failed", "step_skipped")
TIMEOUT_S = 60


BRANCHES = {branch["properties"]["type"]["const"]: branch for branch in SCHEMA["oneOf"]}


def valid(lines: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every line checked against the schema (and its version), every field of it documented there; the lines."""
    jsonschema.Draft202012Validator.check_schema(SCHEMA)
    for line in lines:
        VALIDATOR.validate(line)
        assert line["v"] == 1
        assert set(line) - set(SCHEMA["properties"]) <= set(BRANCHES[line["type"]]["properties"]), line
    return lines


def read_lines(path: Path) -> list[dict[str, Any]]:
    return valid([json.loads(text) for text in path.read_text(encoding="utf-8").splitlines()])


def cli(project: Path, *args: str, timeout: float = TIMEOUT_S) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "orchestrai", *args], cwd=project, env=dict(os.environ),
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, encoding="utf-8", timeout=timeout)


def check_order(lines: list[dict[str, Any]]) -> dict[str, tuple[int, int]]:
    """run_started first, run_finished last, one start and one end per record, the start first; every line
    about a record between its start and its end. Returns each record's (start, end) line numbers."""
    assert lines[0]["type"] == "run_started" and lines[-1]["type"] == "run_finished"
    assert [line["type"] for line in lines].count("run_started") == 1
    assert len({line["run_id"] for line in lines}) == 1
    starts: dict[str, int] = {}
    ends: dict[str, int] = {}
    for index, line in enumerate(lines):
        if line["type"] == "step_started":
            assert line["step_id"] not in starts, f"started twice: {line['step_id']}"
            starts[line["step_id"]] = index
        elif line["type"] in ENDS:
            assert line["step_id"] not in ends, f"ended twice: {line['step_id']}"
            ends[line["step_id"]] = index
    ran = {step for step in ends if lines[ends[step]]["type"] != "step_skipped"}
    assert set(starts) == ran, "a record ran without a start, or started without an end"
    for index, line in enumerate(lines):
        if line["type"] in ("call_finished", "tool_called", "step_retrying", "rate_limit_waited"):
            assert starts[line["step_id"]] < index < ends[line["step_id"]], line
    assert all(starts[step] < ends[step] for step in starts)
    return {step: (starts.get(step, -1), ends[step]) for step in ends}


def test_a_fanout_through_the_cli_every_item_started_and_finished(project: Path, server_config: Path, keys: dict,
                                                                  fake_server: FakeLLMServer) -> None:
    path = fanout_pipeline(project)
    queue_plan(fake_server, TOPICS[:4])
    done = cli(project, "run", str(path), "-i", "request=R", "--events", "events.jsonl", "--no-cache")
    assert done.returncode == 0, done.stderr
    lines = read_lines(project / "events.jsonl")
    spans = check_order(lines)
    items = [f"findings[{i}]" for i in range(4)]
    assert set(spans) == {"request", "plan", "findings", "report", "aside", *items}
    by_id = {line["step_id"]: line for line in lines if line["type"] in ENDS}
    assert all(by_id[item]["parent"] == "findings" and by_id[item]["status"] == "completed" for item in items)
    assert all(spans["findings"][0] < spans[item][0] and spans[item][1] < spans["findings"][1] for item in items)
    [fanout] = [line for line in lines if line["type"] == "fanout_started"]
    assert fanout["step_id"] == "findings" and fanout["total"] == 4
    calls = [line for line in lines if line["type"] == "call_finished"]
    assert {line["step_id"] for line in calls} == {"plan", "report", "aside", *items}  # each item's own call
    assert all(line["parent"] == "findings" for line in calls if line["step_id"] in items)
    finished = lines[-1]
    assert finished["status"] == "completed" and finished["steps"] == {"completed": 9}
    assert finished["totals"]["input_tokens"] == sum(line["input_tokens"] for line in calls)


def test_loop_iterations_through_the_library_hook(project: Path, server_config: Path, keys: dict,
                                                  fake_server: FakeLLMServer) -> None:
    path = loop_pipeline(project)
    fake_server.queue_reply("draft one", match="You are a writer")
    fake_server.queue_reply('{"score": 4, "feedback": "more"}', match="You are a critic")
    fake_server.queue_reply("draft two", match="You are a writer")
    fake_server.queue_reply('{"score": 9, "feedback": "good"}', match="You are a critic")
    seen: list[dict[str, Any]] = []
    result, _ = run_library(path, inputs={"request": "R"}, use_cache=False, hooks=[EventStream(seen.append)])
    assert result.status == "completed"
    spans = check_order(valid(seen))
    body = ["refine#1/draft", "refine#1/review", "refine#2/draft", "refine#2/review"]
    assert set(spans) == {"request", "refine", *body}
    assert {line["step_id"]: line["parent"] for line in seen if line["type"] == "step_started"}["refine#2/draft"] == \
        "refine"
    iterations = [(line["iteration"], line["max_iterations"]) for line in seen if line["type"] == "loop_iteration"]
    assert iterations == [(1, 3), (2, 3)]
    assert sorted(spans, key=lambda step: spans[step][0])[1:] == ["refine", *body]


AGENT = """
pipeline:
  - {module: start_module, output_name: request}
  - {module: agent, inputs: [request], tools: [calculate], output_name: answer}
"""


def test_tool_calls_and_a_refused_tool(project: Path, server_config: Path, keys: dict,
                                       fake_server: FakeLLMServer) -> None:
    write(project / "system_prompts" / "agent.md", "You are an agent. Use your tools.\n")
    path = write(project / "agent.yml", AGENT)
    fake_server.queue_tool_calls([("calculate", {"expression": "(17 + 25) * 2"}), ("delete_everything", {})])
    fake_server.queue_reply("84")
    done = cli(project, "run", str(path), "-i", "request=sum", "--events", "events.jsonl", "--no-cache")
    assert done.returncode == 0, done.stderr
    lines = read_lines(project / "events.jsonl")
    check_order(lines)
    tools = [line for line in lines if line["type"] == "tool_called"]
    ran = [(t["step_id"], t["name"], t["arguments"], t["result"]) for t in tools if not t["refused"]]
    assert ran == [("answer", "calculate", {"expression": "(17 + 25) * 2"}, 84)]
    [refused] = [t for t in tools if t["refused"]]
    assert refused["name"] == "delete_everything" and "tool not allowed" in refused["error"]
    assert [line["step_id"] for line in lines if line["type"] == "call_finished"] == ["answer", "answer"]


def test_retries_and_rate_limit_waits_are_lines(project: Path, server_config: Path, keys: dict,
                                                fake_server: FakeLLMServer) -> None:
    write(project / "system_prompts" / "writer.md", "You are a writer. Write about {{ request }}.\n")
    write(project / "config.yml", server_config.read_text(encoding="utf-8")
          + "rate_limits:\n  openai: {max_concurrent: 1}\n")
    path = write(project / "two.yml", """
        pipeline:
          - {module: start_module, output_name: request}
          - {module: writer, id: left, inputs: [request], output_name: a}
          - {module: writer, id: right, inputs: [request], output_name: b}
        """)
    failed_once: list[int] = []

    def first_fails(index: int, request: Any) -> Any:
        if not failed_once:
            failed_once.append(index)
            return (500, "upstream hiccup")
        return None

    fake_server.set_error_rule(first_fails)
    fake_server.latency_s = 0.3  # one call in flight at a time: the other waits this long at least
    done = cli(project, "run", str(path), "-i", "request=R", "--events", "events.jsonl", "--no-cache")
    assert done.returncode == 0, done.stderr
    lines = read_lines(project / "events.jsonl")
    check_order(lines)
    [retry] = [line for line in lines if line["type"] == "step_retrying"]
    assert retry["step_id"] in ("left", "right") and retry["attempt"] == 1 and "hiccup" in retry["error"]
    assert retry["wait_s"] > 0
    waits = [line for line in lines if line["type"] == "rate_limit_waited"]
    assert waits and all(w["provider"] == "openai" and w["model"] == "gpt-4o-mini" and w["wait_s"] >= 0.01
                         for w in waits)
    ends = {line["step_id"]: line for line in lines if line["type"] in ENDS}
    assert ends[retry["step_id"]]["attempts"] == 2 and ends[retry["step_id"]]["status"] == "completed"


def test_lines_are_written_as_they_happen(project: Path, fake_server: FakeLLMServer, keys: dict) -> None:
    """The second step's call is held by the server: the first step's lines are in the file meanwhile."""
    write(project / "config.yml", f"""
        providers:
          openai: {{base_url: {fake_server.base_url}, api_key: "${{TEST_OPENAI_KEY}}", timeout_s: 120}}
        default_model_config: {{model: gpt-4o-mini}}
        retry: {{max_attempts: 1}}
        log_dir: logs
        """)
    write(project / "system_prompts" / "first.md", "You are first. {{ request }}\n")
    write(project / "system_prompts" / "second.md", "You are second. {{ a }}\n")
    path = write(project / "held.yml", """
        pipeline:
          - {module: start_module, output_name: request}
          - {module: first, inputs: [request], output_name: a}
          - {module: second, inputs: [a], output_name: b}
        """)
    release, held = threading.Event(), threading.Event()

    def hold_second(index: int, request: Any) -> Any:
        if "You are second" in json.dumps(request.body):
            held.set()
            release.wait(TIMEOUT_S)
        return None

    fake_server.set_error_rule(hold_second)
    events = project / "events.jsonl"
    proc = subprocess.Popen([sys.executable, "-m", "orchestrai", "run", str(path), "-i", "request=R", "--events",
                             str(events), "--no-cache"], cwd=project, env=dict(os.environ), stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, encoding="utf-8")
    try:
        assert held.wait(TIMEOUT_S), "the second step never called the server"
        lines = [json.loads(text) for text in events.read_text(encoding="utf-8").splitlines()]
        assert proc.poll() is None  # the run is still going
        seen = [(line["type"], line.get("step_id")) for line in lines]
        assert ("step_finished", "a") in seen and ("step_started", "b") in seen
        assert ("run_finished", None) not in seen and ("step_finished", "b") not in seen
    finally:
        release.set()
        out, err = proc.communicate(timeout=TIMEOUT_S)
    assert proc.returncode == 0, err
    check_order(read_lines(events))


def test_events_on_stdout_are_pure_json_and_the_rest_goes_to_stderr(project: Path) -> None:
    done = cli(project, "run", "pipelines/translation.yml", "--dry-run", "-i", "request=hello", "--events", "-")
    assert done.returncode == 0, done.stderr
    lines = valid([json.loads(text) for text in done.stdout.splitlines()])
    check_order(lines)
    assert {line["step_id"] for line in lines if line["type"] == "step_finished"} == {"request", "spanish", "french"}
    assert "run " in done.stderr and "completed" in done.stderr  # the summary line
    assert "would send to" in done.stderr  # the dry run's prompts, away from the events
    both = cli(project, "run", "pipelines/translation.yml", "--dry-run", "-i", "request=x", "--events", "-", "--json")
    assert both.returncode == 2 and "--events - and --json both write to stdout" in both.stderr


def test_a_bad_events_path_is_one_line_and_exit_2(project: Path) -> None:
    done = cli(project, "run", "pipelines/translation.yml", "--dry-run", "-i", "request=x",
               "--events", "no/such/folder/events.jsonl")
    assert done.returncode == 2 and "cannot write events to no/such/folder/events.jsonl" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_configured_key_never_reaches_the_stream(project: Path, server_config: Path, keys: dict,
                                                   fake_server: FakeLLMServer) -> None:
    secret = keys["TEST_OPENAI_KEY"]
    write(project / "system_prompts" / "agent.md", "You are an agent. Use your tools.\n")
    path = write(project / "agent.yml", AGENT)
    # The model sends the key as a tool's arguments (a prompt injection would): the tool fails on it,
    # and both the arguments and the error would carry it.
    fake_server.queue_tool_calls([("calculate", {"expression": secret})])
    fake_server.queue_reply(f"the key is {secret}")
    done = cli(project, "run", str(path), "-i", f"request=use {secret}", "--events", "events.jsonl", "--no-cache")
    assert done.returncode == 0, done.stderr
    text = (project / "events.jsonl").read_text(encoding="utf-8")
    assert secret not in text and "***" in text
    [tool] = [line for line in read_lines(project / "events.jsonl") if line["type"] == "tool_called"]
    assert tool["arguments"] == {"expression": "***"}
    seen: list[dict[str, Any]] = []  # the library hook redacts too, also with outputs asked for
    fake_server.queue_reply(f"the key is {secret}")
    write(project / "plain.yml", "pipeline:\n  - {module: start_module, output_name: request}\n"
                                 "  - {module: agent, inputs: [request], output_name: answer}\n")
    run_library(project / "plain.yml", inputs={"request": "x"}, use_cache=False,
                hooks=[EventStream(seen.append, outputs=True)])
    assert secret not in json.dumps(seen)
    assert [line["output"] for line in seen if line["type"] == "step_finished" and line["step_id"] == "answer"] == [
        "the key is ***"]


def test_tokens_only_when_asked_and_unknown_events_ignored(project: Path, server_config: Path, keys: dict,
                                                           fake_server: FakeLLMServer) -> None:
    write(project / "system_prompts" / "writer.md", "You are a writer. Write about {{ request }}.\n")
    path = write(project / "one.yml", "pipeline:\n  - {module: start_module, output_name: request}\n"
                                      "  - {module: writer, inputs: [request], output_name: a}\n")
    fake_server.queue_reply("three little words")
    fake_server.queue_reply("three little words")
    quiet: list[dict[str, Any]] = []
    streamed: list[dict[str, Any]] = []
    run_library(path, inputs={"request": "R"}, use_cache=False, stream=True, hooks=[EventStream(quiet.append)])
    run_library(path, inputs={"request": "R"}, use_cache=False, stream=True,
                hooks=[EventStream(streamed.append, tokens=True)])
    assert not [line for line in quiet if line["type"] == "step_token"]
    tokens = [line for line in valid(streamed) if line["type"] == "step_token"]
    assert "".join(line["text"] for line in tokens).split() == ["three", "little", "words"]
    assert all(line["step_id"] == "a" for line in tokens)
    stream = EventStream(quiet.append)
    stream.on_event(object())  # type: ignore[arg-type]  # an event type a later version adds: no line
    assert quiet[-1]["type"] == "run_finished"


def test_a_file_target_is_flushed_per_line_without_close(tmp_path: Path) -> None:
    from orchestrai.api import Notice

    target = tmp_path / "events.jsonl"
    stream = EventStream(target)
    stream.on_event(Notice("hello"))
    line = json.loads(target.read_text(encoding="utf-8"))
    assert line["type"] == "notice" and line["text"] == "hello" and line["run_id"] is None
    assert time.time() - line["at"] < 3600
    stream.close()
    with pytest.raises(OSError):
        EventStream(tmp_path / "missing" / "x.jsonl")


def test_sub_pipelines_under_a_foreach_and_a_resumed_run_pair_every_start_and_end(
        project: Path, server_config: Path, keys: dict, fake_server: FakeLLMServer) -> None:
    write(project / "pipelines" / "research.yml", """
        pipeline:
          - {module: start_module, output_name: subject}
          - {module: digger, inputs: [subject], output_name: notes}
        """)
    write(project / "system_prompts" / "digger.md", "You are a digger. Dig into {{ subject }}.\n")
    path = fanout_pipeline(project, aside=False, synth=False)  # the prompts, and a plan to fan out over
    path = write(project / "main.yml", path.read_text(encoding="utf-8").replace(
        "{module: researcher, foreach: plan.topics, as: topic, max_concurrency: 2, output_name: findings}",
        "{pipeline: pipelines/research.yml, foreach: plan.topics, as: topic, with: {subject: topic}, "
        "output: notes, output_name: findings}"))
    queue_plan(fake_server, ["alpha", "beta"])
    fake_server.default_reply = "ok"
    seen: list[dict[str, Any]] = []
    first, log = run_library(path, inputs={"request": "R"}, use_cache=False, hooks=[EventStream(seen.append)])
    assert first.status == "completed"
    spans = check_order(valid(seen))
    assert {"findings", "findings[0]", "findings[1]/subject", "findings[1]/notes"} <= set(spans)
    parents = {line["step_id"]: line["parent"] for line in seen if line["type"] == "step_started"}
    assert parents["findings[1]/notes"] == "findings[1]" and parents["findings[1]"] == "findings"
    inferred = {line["step_id"] for line in seen if line.get("inferred")}
    assert "findings" in inferred  # announced by fanout_started only: the stream wrote its start
    again: list[dict[str, Any]] = []
    from orchestrai.engine.resume import ResumeSource
    from orchestrai.observe.memory_log import read_log

    assert log.path is not None
    resume = ResumeSource.from_log(log.path, read_log(log.path))
    second, _ = run_library(path, inputs={"request": "R"}, use_cache=False, resume=resume,
                            hooks=[EventStream(again.append)])
    assert second.status == "completed"
    check_order(valid(again))
    ends = {line["step_id"]: line["status"] for line in again if line["type"] in ENDS}
    assert ends["plan"] == "resumed"
    assert {line["step_id"] for line in again if line.get("inferred")} >= {"plan"}


def test_one_naming_for_the_stream_its_schema_and_webhooks() -> None:
    from orchestrai import webhookconfig
    from orchestrai.api import EVENT_TYPES
    from orchestrai.event_names import EVENT_NAMES, NAMES_BY_CLASS
    from orchestrai.observe.event_stream import EVENTS

    assert {cls.__name__ for cls in EVENT_TYPES} - set(NAMES_BY_CLASS) == {"RunDrained"}  # bookkeeping, not streamed
    assert sorted(branch["properties"]["type"]["const"] for branch in SCHEMA["oneOf"]) == sorted(EVENT_NAMES)
    assert {cls.__name__ for cls in EVENTS} | {"StepToken"} == set(NAMES_BY_CLASS)
    assert set(webhookconfig.EVENT_NAMES) <= set(EVENT_NAMES)


def test_watch_runs_append_to_one_stream(project: Path, server_config: Path, keys: dict,
                                         fake_server: FakeLLMServer) -> None:
    """`run --watch --events FILE`: one file for every run of the session, each run complete and in order."""
    import io

    from rich.console import Console

    from orchestrai.cli.runcmd import RunRequest
    from orchestrai.cli.watchcmd import watch_command

    write(project / "system_prompts" / "writer.md", "You are a writer. Write about {{ request }}.\n")
    pipeline = write(project / "one.yml", "pipeline:\n  - {module: start_module, output_name: request}\n"
                                          "  - {module: writer, inputs: [request], output_name: a}\n")
    prompt = project / "system_prompts" / "writer.md"
    edits = [lambda: prompt.write_text(prompt.read_text() + "Be brief.\n")]

    def sleep(_: float) -> None:
        if edits:
            edits.pop(0)()

    request = RunRequest(pipeline=pipeline, inputs=["request=R"], quiet=True, events=str(project / "events.jsonl"))
    assert watch_command(request, sleep=sleep, runs=2, console=Console(file=io.StringIO())) == 0
    lines = read_lines(project / "events.jsonl")
    starts = [index for index, line in enumerate(lines) if line["type"] == "run_started"]
    assert len(starts) == 2 and len({line["run_id"] for line in lines}) == 2
    first, second = lines[:starts[1]], lines[starts[1]:]
    check_order(first)
    check_order(second)
    assert [line["status"] for line in second if line["type"] in ENDS] == ["resumed", "completed"]
