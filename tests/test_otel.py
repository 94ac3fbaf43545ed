"""OpenTelemetry traces: spans captured by the SDK's in-memory exporter from library runs over the loopback
LLM server, and by an OTLP/HTTP receiver on 127.0.0.1 from a real `orchestrai run`; a collector that is down."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from conftest import write
from fake_llm_server import FakeLLMServer
from helpers import run_library

from orchestrai.errors import ConfigError, MissingExtraError, ValidationFailed

pytest.importorskip("opentelemetry.sdk")

PLAN_SCHEMA = ("{type: object, properties: {topics: {type: array, items: {type: string}}}, required: [topics], "
               "additionalProperties: false}")
REVIEW_SCHEMA = "{type: object, properties: {score: {type: integer}}, required: [score]}"


def prompts(project: Path) -> None:
    for name, text in {"planner": "You are a planner. List topics for {{ request }}.",
                       "researcher": "You are a researcher. Research {{ topic }}.",
                       "writer": "You are a writer. Write a draft of {{ request }}.",
                       "critic": "You are a critic. Score the draft.",
                       "agent": "You are an agent. Use your tools for {{ request }}.",
                       "flaky": "You are flaky. Answer {{ request }}.",
                       "doomed": "You are doomed. Answer {{ request }}."}.items():
        write(project / "system_prompts" / f"{name}.md", text + "\n")


def big_pipeline(project: Path) -> Path:
    """A fan-out, a loop, a tool-using step, a step that is retried once and a non-critical step that fails."""
    prompts(project)
    return write(project / "big.yml", f"""
        pipeline:
          - {{module: start_module, output_name: request}}
          - {{module: planner, inputs: [request], output_name: plan, output_schema: {PLAN_SCHEMA}}}
          - {{module: researcher, foreach: plan.topics, as: topic, output_name: findings}}
          - loop:
              max_iterations: 2
              until: "review.score >= 8"
              steps:
                - {{module: writer, inputs: [request], optional_inputs: [review], output_name: draft}}
                - {{module: critic, inputs: [draft], output_name: review, output_schema: {REVIEW_SCHEMA}}}
            id: refine
            output: draft
            output_name: final_draft
          - {{module: agent, inputs: [request], tools: [calculate], output_name: answer}}
          - {{module: flaky, inputs: [request], output_name: flaky_answer}}
          - {{module: doomed, inputs: [request], output_name: doomed_answer, critical: false}}
        """)


def script(server: FakeLLMServer) -> None:
    server.queue_reply(json.dumps({"topics": ["alpha", "beta"]}), match="You are a planner")
    server.queue_reply('{"score": 3}', match="You are a critic")
    server.queue_reply('{"score": 9}', match="You are a critic")
    server.queue_tool_calls([("calculate", {"expression": "17 + 25"})], match="You are an agent")
    server.queue_reply("the answer is 42", match="You are an agent")
    server.queue_reply("overloaded", status=500, match="You are flaky")
    server.queue_reply("no such model here", status=400, match="You are doomed")
    server.default_reply = "fine"


class Spans:
    """Finished spans by name, with their parents."""

    def __init__(self, spans: Any) -> None:
        self.all = list(spans)
        self.by_id = {span.context.span_id: span for span in self.all}

    def named(self, name: str) -> list[Any]:
        return [span for span in self.all if span.name == name]

    def one(self, name: str) -> Any:
        [span] = self.named(name)
        return span

    def parent(self, span: Any) -> Any:
        return self.by_id.get(span.parent.span_id) if span.parent is not None else None

    def with_step(self, step_id: str) -> Any:
        [span] = [s for s in self.all if s.attributes.get("orchestrai.step.id") == step_id]
        return span


def traced_run(path: Path, capture: bool = False, inputs: dict[str, str] | None = None) -> tuple[Any, Spans]:
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from orchestrai.observe.otel_hook import OtelHook
    from orchestrai.otelconfig import OtelSettings

    exporter = InMemorySpanExporter()
    hook = OtelHook(OtelSettings(capture_content=capture), exporter=exporter)
    result, _ = run_library(path, inputs=inputs or {"request": "R"}, use_cache=False, otel=False, hooks=[hook])
    assert not [notice for notice in result.notices if "OpenTelemetry" in notice]  # delivered
    return result, Spans(exporter.get_finished_spans())


def test_the_trace_nests_fanouts_loops_tools_retries_and_failures(project: Path, server_config: Path, keys: dict,
                                                                  fake_server: FakeLLMServer) -> None:
    script(fake_server)
    result, spans = traced_run(big_pipeline(project))
    assert result.status == "partial", [(r.id, r.error) for r in result.records if r.error]
    root = spans.one("invoke_workflow big")
    assert root.parent is None and root.attributes["gen_ai.operation.name"] == "invoke_workflow"
    assert root.attributes["orchestrai.run.id"] == result.run_id
    assert root.attributes["gen_ai.usage.input_tokens"] == result.totals.input_tokens > 0
    assert len({span.context.trace_id for span in spans.all}) == 1

    # Every top-level step hangs under the run.
    for step_id in ("request", "plan", "findings", "refine", "answer", "flaky_answer", "doomed_answer"):
        assert spans.parent(spans.with_step(step_id)) is root, step_id
    assert spans.with_step("request").name == "step request"

    # A one-call step is that call: `chat {model}` with the GenAI attributes.
    plan = spans.with_step("plan")
    assert plan.name == "chat gpt-4o-mini"
    assert plan.attributes["gen_ai.operation.name"] == "chat"
    assert plan.attributes["gen_ai.provider.name"] == "openai"
    assert plan.attributes["gen_ai.request.model"] == "gpt-4o-mini"
    assert plan.attributes["gen_ai.response.model"] == "gpt-4o-mini"
    assert plan.attributes["gen_ai.usage.input_tokens"] > 0 and plan.attributes["gen_ai.usage.output_tokens"] > 0
    assert plan.attributes["orchestrai.cached"] is False

    # Fan-out items under their step.
    findings = spans.with_step("findings")
    assert findings.name == "invoke_workflow findings"
    items = [spans.with_step(f"findings[{n}]") for n in range(2)]
    assert all(spans.parent(item) is findings and item.name == "chat gpt-4o-mini" for item in items)

    # Loop body steps under one span per iteration, under the loop.
    refine = spans.with_step("refine")
    iterations = {span.name: span for span in spans.all if spans.parent(span) is refine}
    assert set(iterations) == {"refine#1", "refine#2"}
    for n in (1, 2):
        for body in ("draft", "review"):
            assert spans.parent(spans.with_step(f"refine#{n}/{body}")) is iterations[f"refine#{n}"]

    # The tool-using step: invoke_agent, with its two model rounds and the tool call as children.
    answer = spans.with_step("answer")
    assert answer.name == "invoke_agent answer" and answer.attributes["gen_ai.agent.name"] == "answer"
    under = [span for span in spans.all if spans.parent(span) is answer]
    assert sorted(span.name for span in under) == ["chat gpt-4o-mini", "chat gpt-4o-mini", "execute_tool calculate"]
    tool = spans.one("execute_tool calculate")
    assert tool.attributes["gen_ai.tool.name"] == "calculate" and tool.attributes["gen_ai.tool.type"] == "function"
    assert tool.attributes["gen_ai.tool.call.id"]
    assert "gen_ai.tool.call.arguments" not in tool.attributes and "gen_ai.tool.call.result" not in tool.attributes

    # The retried step: its failed attempt is a child `chat` span with the error.
    flaky = spans.with_step("flaky_answer")
    assert flaky.name == "chat gpt-4o-mini" and flaky.status.is_ok
    [attempt] = [span for span in spans.all if spans.parent(span) is flaky]
    assert attempt.status.status_code.name == "ERROR" and attempt.attributes["error.type"] == "server"
    assert attempt.start_time <= attempt.end_time <= flaky.end_time
    assert [event.name for event in flaky.events] == ["orchestrai.retry"]

    # The failed step: ERROR, error.type, an exception event with the message.
    doomed = spans.with_step("doomed_answer")
    assert doomed.status.status_code.name == "ERROR" and doomed.attributes["error.type"] == "bad_request"
    [exception] = [event for event in doomed.events if event.name == "exception"]
    assert "no such model here" in exception.attributes["exception.message"]
    assert root.attributes["orchestrai.run.status"] == "partial" and root.status.is_ok

    # Children start after and end before their parents (times come from the events).
    for span in spans.all:
        parent = spans.parent(span)
        if parent is not None:
            assert parent.start_time <= span.start_time + 2_000_000 and span.end_time <= parent.end_time + 2_000_000

    # No content without capture_content; no key anywhere.
    for span in spans.all:
        assert not {key for key in span.attributes if key.startswith(("gen_ai.input", "gen_ai.output",
                                                                       "gen_ai.system_instructions"))}
        text = json.dumps({k: str(v) for k, v in span.attributes.items()}) + json.dumps(
            [dict(e.attributes or {}) for e in span.events], default=str)
        assert keys["TEST_OPENAI_KEY"] not in text and "sk-test" not in text


def test_capture_content_records_messages_and_tool_calls_redacted(project: Path, server_config: Path, keys: dict,
                                                                  fake_server: FakeLLMServer) -> None:
    prompts(project)
    path = write(project / "agent.yml", """
        pipeline:
          - {module: start_module, output_name: request}
          - {module: agent, inputs: [request], tools: [calculate], output_name: answer}
        """)
    secret = keys["TEST_OPENAI_KEY"]
    fake_server.queue_tool_calls([("calculate", {"expression": "17 + 25"})], match="You are an agent")
    fake_server.queue_reply(f"42, and the key is {secret}", match="You are an agent")
    result, spans = traced_run(path, capture=True, inputs={"request": f"add, key {secret}"})
    assert result.status == "completed"
    answer = spans.with_step("answer")
    inputs = json.loads(answer.attributes["gen_ai.input.messages"])
    assert inputs[0]["role"] == "user" and "add, key ***" in inputs[0]["parts"][0]["content"]
    assert any(part["type"] == "tool_call" and part["name"] == "calculate" for m in inputs for part in m["parts"])
    assert json.loads(answer.attributes["gen_ai.system_instructions"])[0]["content"].startswith("You are an agent")
    output = json.loads(answer.attributes["gen_ai.output.messages"])
    assert output[0]["parts"][0]["content"] == "42, and the key is ***"
    tool = spans.one("execute_tool calculate")
    assert json.loads(tool.attributes["gen_ai.tool.call.arguments"]) == {"expression": "17 + 25"}
    assert tool.attributes["gen_ai.tool.call.result"] == "42"
    for span in spans.all:
        assert secret not in json.dumps({k: str(v) for k, v in span.attributes.items()})


def test_sub_pipeline_steps_and_a_module_called_as_a_tool_nest(project: Path, server_config: Path, keys: dict,
                                                              fake_server: FakeLLMServer) -> None:
    prompts(project)
    write(project / "system_prompts" / "summer.md", "You are a summer. Sum up {{ subject }}.\n")
    write(project / "system_prompts" / "translator.md", "You are a translator. Translate {{ text }}.\n")
    write(project / "pipelines" / "sub.yml", """
        pipeline:
          - {module: start_module, output_name: subject}
          - {module: summer, inputs: [subject], output_name: summary}
        """)
    path = write(project / "nested.yml", """
        pipeline:
          - {module: start_module, output_name: request}
          - {pipeline: pipelines/sub.yml, inputs: [request], with: {subject: request}, output_name: whole}
          - module: agent
            inputs: [request]
            output_name: a
            tools: [{module: translator}]
        """)
    fake_server.queue_tool_calls([("translator", {"text": "hello"})], match="You are an agent")
    fake_server.queue_reply("bonjour", match="You are a translator")
    fake_server.queue_reply("done", match="You are an agent")
    result, spans = traced_run(path)
    assert result.status == "completed", [(r.id, r.error) for r in result.records if r.error]
    whole = spans.with_step("whole")
    assert whole.name == "invoke_workflow whole"
    assert spans.parent(spans.with_step("whole/summary")) is whole
    assert spans.parent(spans.with_step("whole/subject")) is whole
    tool = spans.one("execute_tool translator")
    assert spans.parent(tool) is spans.with_step("a")
    spawned = spans.with_step("a/translator@0/translator")
    assert spans.parent(spawned) is tool and spawned.name == "chat gpt-4o-mini"
    assert tool.start_time <= spawned.start_time and spawned.end_time <= tool.end_time + 2_000_000


def test_a_wait_for_a_rate_limit_is_an_event_on_the_waiting_item(project: Path, server_config: Path, keys: dict,
                                                                  fake_server: FakeLLMServer) -> None:
    server_config.write_text(server_config.read_text() + "rate_limits: {openai: {max_concurrent: 1}}\n")
    prompts(project)
    path = write(project / "fan.yml", f"""
        pipeline:
          - {{module: start_module, output_name: request}}
          - {{module: planner, inputs: [request], output_name: plan, output_schema: {PLAN_SCHEMA}}}
          - {{module: researcher, foreach: plan.topics, as: topic, output_name: findings}}
        """)
    fake_server.queue_reply(json.dumps({"topics": ["a", "b", "c"]}), match="You are a planner")
    fake_server.latency_s = 0.05  # one call at a time: the other items wait for the limiter
    result, spans = traced_run(path)
    assert result.status == "completed"
    waits = [(span.attributes["orchestrai.step.id"], event) for span in spans.all for event in span.events
             if event.name == "orchestrai.rate_limit_wait"]
    assert waits and all(step_id.startswith("findings[") for step_id, _ in waits)
    assert all(event.attributes["wait_s"] >= 0.01 and event.attributes["model"] == "gpt-4o-mini" for _, event in waits)


# --- a real `orchestrai run` against an OTLP/HTTP receiver --------------------------------------------------


class Receiver:
    """An OTLP/HTTP collector on 127.0.0.1: POST /v1/traces, protobuf bodies decoded and kept."""

    def __init__(self) -> None:
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

        receiver = self
        self.requests: list[tuple[dict[str, str], Any]] = []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.path != "/v1/traces":
                    self.send_response(404)
                    self.end_headers()
                    return
                message = ExportTraceServiceRequest()
                message.ParseFromString(body)
                receiver.requests.append(({k.lower(): v for k, v in self.headers.items()}, message))
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def spans(self) -> list[Any]:
        return [span for _, message in self.requests for resource in message.resource_spans
                for scope in resource.scope_spans for span in scope.spans]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    server.thread.start()
    yield server
    server.server.shutdown()
    server.server.server_close()


def otel_config(project: Path, fake_server: FakeLLMServer, endpoint: str, protocol: str = "http/protobuf") -> Path:
    return write(project / "config.yml", f"""
        providers:
          openai: {{base_url: {fake_server.base_url}, api_key: "${{TEST_OPENAI_KEY}}", timeout_s: 5}}
        default_model_config: {{model: gpt-4o-mini}}
        log_dir: logs
        otel:
          endpoint: {endpoint}
          protocol: {protocol}
          headers: {{x-honeycomb-team: "${{HONEYCOMB_KEY}}"}}
          service_name: otel-test
        """)


def cli_run(project: Path, env_extra: dict[str, str], pipeline: str,
            request: str = "R") -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent), **env_extra}
    return subprocess.run([sys.executable, "-m", "orchestrai", "run", pipeline, "--input", f"request={request}",
                           "--no-cache"],
                          cwd=project, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120)


def _attributes(span: Any) -> dict[str, Any]:
    values = {}
    for item in span.attributes:
        value = item.value
        values[item.key] = getattr(value, value.WhichOneof("value")) if value.WhichOneof("value") else None
    return values


HONEYCOMB = "hc-secret-abcdef0123456789"


def after_request(project: Path, name: str, step: str) -> Path:
    """A pipeline file: the run input `request`, then `step`."""
    prompts(project)
    return write(project / name, f"pipeline:\n  - {{module: start_module, output_name: request}}\n  - {step}\n")


def test_a_cli_run_sends_its_trace_to_an_otlp_http_collector(project: Path, keys: dict, fake_server: FakeLLMServer,
                                                             receiver: Receiver) -> None:
    config = otel_config(project, fake_server, f"http://127.0.0.1:{receiver.port}")
    config.write_text(config.read_text() + "  capture_content: true\n")  # the secrets must not leak even then
    after_request(project, "small.yml", "{module: agent, inputs: [request], tools: [calculate], output_name: answer}")
    fake_server.queue_tool_calls([("calculate", {"expression": "1 + 1"})], match="You are an agent")
    fake_server.queue_reply(f"two, says {keys['TEST_OPENAI_KEY']}", match="You are an agent")
    done = cli_run(project, {**keys, "HONEYCOMB_KEY": HONEYCOMB}, "small.yml", request=f"add with {HONEYCOMB}")
    assert done.returncode == 0, done.stderr
    assert receiver.requests, done.stderr
    assert all(headers.get("x-honeycomb-team") == HONEYCOMB for headers, _ in receiver.requests)
    spans = {span.name: span for span in receiver.spans()}
    assert {"invoke_workflow small", "step request", "invoke_agent answer", "execute_tool calculate"} <= set(spans)
    root = spans["invoke_workflow small"]
    assert spans["invoke_agent answer"].parent_span_id == root.span_id
    assert spans["execute_tool calculate"].parent_span_id == spans["invoke_agent answer"].span_id
    answer = _attributes(spans["invoke_agent answer"])
    assert answer["gen_ai.provider.name"] == "openai"
    assert "add with ***" in answer["gen_ai.input.messages"] and "two, says ***" in answer["gen_ai.output.messages"]
    resource = receiver.requests[0][1].resource_spans[0].resource
    assert {item.key: item.value.string_value for item in resource.attributes}["service.name"] == "otel-test"
    everything = b"".join(message.SerializeToString() for _, message in receiver.requests)
    assert HONEYCOMB.encode() not in everything and keys["TEST_OPENAI_KEY"].encode() not in everything
    log = next((project / "logs").glob("*.json")).read_text()
    assert HONEYCOMB not in log
    assert json.loads(log)["otel"] == {"trace_id": root.trace_id.hex(), "delivered": True,
                                       "endpoint": f"http://127.0.0.1:{receiver.port}/v1/traces"}


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.parametrize("protocol", ["http/protobuf", "grpc"])
def test_a_collector_that_is_down_costs_one_line_and_never_the_run(project: Path, keys: dict, protocol: str,
                                                                    fake_server: FakeLLMServer) -> None:
    otel_config(project, fake_server, f"http://127.0.0.1:{closed_port()}", protocol)
    after_request(project, "one.yml", "{module: flaky, inputs: [request], output_name: answer}")
    done = cli_run(project, {**keys, "HONEYCOMB_KEY": HONEYCOMB}, "one.yml")
    assert done.returncode == 0, done.stderr
    assert "completed" in done.stderr
    assert "Traceback" not in done.stderr and "opentelemetry" not in done.stderr.lower().replace("opentelemetry:", "")
    lines = [line for line in done.stderr.splitlines() if "OpenTelemetry" in line]
    assert len(lines) == 1 and "was not delivered to http://127.0.0.1:" in lines[0], done.stderr
    assert lines[0].startswith("! OpenTelemetry: the trace of run ") and lines[0].endswith(": Connection refused")
    assert HONEYCOMB not in done.stderr
    log = json.loads(next((project / "logs").glob("*.json")).read_text())
    assert log["status"] == "completed" and log["otel"]["delivered"] is False
    assert log["otel"]["error"] == "Connection refused" and len(log["otel"]["trace_id"]) == 32


def test_each_batch_row_is_its_own_trace(project: Path, keys: dict, fake_server: FakeLLMServer,
                                         receiver: Receiver) -> None:
    otel_config(project, fake_server, f"http://127.0.0.1:{receiver.port}")
    after_request(project, "one.yml", "{module: flaky, inputs: [request], output_name: answer}")
    (project / "rows.jsonl").write_text("".join(json.dumps({"request": f"row-{n}"}) + "\n" for n in range(4)))
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent), **keys, "HONEYCOMB_KEY": HONEYCOMB}
    done = subprocess.run([sys.executable, "-m", "orchestrai", "batch", "one.yml", "--data", "rows.jsonl", "-o",
                           "out.jsonl", "--concurrency", "2", "--no-cache"], cwd=project, env=env,
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    roots = [span for span in receiver.spans() if span.name == "invoke_workflow one"]
    assert len(roots) == 4 and len({span.trace_id for span in roots}) == 4
    chats = [span for span in receiver.spans() if span.name == "chat gpt-4o-mini"]
    assert sorted(span.trace_id for span in chats) == sorted(span.trace_id for span in roots)
    assert all(chat.parent_span_id in {root.span_id for root in roots} for chat in chats)


def test_the_standard_environment_variables_turn_tracing_on(project: Path, keys: dict, fake_server: FakeLLMServer,
                                                            receiver: Receiver) -> None:
    write(project / "config.yml", f"""
        providers:
          openai: {{base_url: {fake_server.base_url}, api_key: "${{TEST_OPENAI_KEY}}", timeout_s: 5}}
        default_model_config: {{model: gpt-4o-mini}}
        """)
    prompts(project)
    after_request(project, "one.yml", "{module: flaky, inputs: [request], output_name: answer}")
    env = {**keys, "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{receiver.port}",
           "OTEL_EXPORTER_OTLP_HEADERS": f"authorization=Bearer%20{HONEYCOMB}", "OTEL_SERVICE_NAME": "from-env"}
    done = cli_run(project, env, "one.yml")
    assert done.returncode == 0, done.stderr
    assert {span.name for span in receiver.spans()} == {"invoke_workflow one", "step request", "chat gpt-4o-mini"}
    assert receiver.requests[0][0]["authorization"] == f"Bearer {HONEYCOMB}"
    resource = receiver.requests[0][1].resource_spans[0].resource
    assert {item.key: item.value.string_value for item in resource.attributes}["service.name"] == "from-env"


# --- config ---------------------------------------------------------------------------------------------------


def test_otel_config_problems_are_reported_at_their_lines(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from orchestrai.config import load_config

    write(project / "config.yml", """
        log_dir: logs
        otel:
          endpoint: localhost:4318
          protocol: thrift
          colour: blue
        """)
    with pytest.raises(ValidationFailed) as caught:
        load_config(project / "config.yml")
    text = "\n".join(str(problem) for problem in caught.value.problems).lower()
    assert "config.yml:3" in text and "is not an http:// or https:// url" in text
    assert "config.yml:4" in text and "config.yml:5" in text

    monkeypatch.delenv("OTEL_HEADER_KEY", raising=False)
    write(project / "config.yml", """
        otel:
          endpoint: http://localhost:4318
          headers: {api-key: "${OTEL_HEADER_KEY}"}
        """)
    config = load_config(project / "config.yml")
    with pytest.raises(ConfigError) as error:
        config.otel_settings()
    assert "config.yml:3" in str(error.value) and "OTEL_HEADER_KEY is not set" in str(error.value)

    monkeypatch.setenv("OTEL_HEADER_KEY", "hdr-secret-0123456789")
    config = load_config(project / "config.yml")
    settings = config.otel_settings()
    assert settings is not None and settings.headers == {"api-key": "hdr-secret-0123456789"}
    assert settings.traces_endpoint == "http://localhost:4318/v1/traces"
    assert "hdr-secret-0123456789" in config.secrets()
    assert config.redacted()["otel"]["headers"] == {"api-key": "***"}
    assert "hdr-secret" not in repr(settings)


def test_no_otel_key_and_no_variables_means_no_tracing(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from orchestrai.config import load_config

    for name in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_SDK_DISABLED"):
        monkeypatch.delenv(name, raising=False)
    assert load_config(None).otel_settings() is None
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://127.0.0.1:4318/v1/traces")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "grpc")
    settings = load_config(None).otel_settings()
    assert settings is not None and settings.endpoint is None and settings.protocol == "grpc"
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    assert load_config(None).otel_settings() is None


def test_missing_opentelemetry_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("opentelemetry.sdk", "opentelemetry.sdk.trace", "opentelemetry.sdk.resources",
                 "opentelemetry.sdk.trace.export"):
        monkeypatch.setitem(sys.modules, name, None)
    from orchestrai.observe.otel_hook import OtelHook

    with pytest.raises(MissingExtraError) as caught:
        OtelHook()
    assert caught.value.hint == 'pip install "orchestrai[otel]"'


def test_a_run_with_otel_configured_but_not_installed_says_which_extra(project: Path, keys: dict, tmp_path: Path,
                                                                       fake_server: FakeLLMServer) -> None:
    otel_config(project, fake_server, "http://127.0.0.1:4318")
    after_request(project, "one.yml", "{module: flaky, inputs: [request], output_name: answer}")
    blocker = write(tmp_path / "blocker" / "opentelemetry" / "__init__.py", "")  # hides the real namespace package
    repo = str(Path(__file__).resolve().parent.parent)
    done = cli_run(project, {**keys, "HONEYCOMB_KEY": HONEYCOMB,
                             "PYTHONPATH": os.pathsep.join([str(blocker.parent.parent), repo])}, "one.yml")
    assert done.returncode == 2, done.stderr
    assert "OpenTelemetry is not installed" in done.stderr and 'pip install "orchestrai[otel]"' in done.stderr
    assert "Traceback" not in done.stderr and not fake_server.requests
