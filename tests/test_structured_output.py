"""Structured outputs (`output_schema:`): the wire formats over the real SDKs and the loopback server,
validation and the correction loop, echo's instances for --dry-run, and every bad input at its line."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from conftest import write
from fake_llm_server import FakeLLMServer
from helpers import run_library

from orchestrai.project import Project
from orchestrai.providers.schema_formats import openai_response_format, strict_allowed
from orchestrai.schema_instance import example_instance
from orchestrai.schemas import parse_answer

PLAN_SCHEMA = {"type": "object", "properties": {"topics": {"type": "array", "items": {"type": "string"}},
                                                "title": {"type": "string"}},
               "required": ["topics", "title"], "additionalProperties": False}
VALID = json.dumps({"topics": ["bees", "honey"], "title": "Bees"})


def cli(project: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "orchestrai", *args], cwd=project, capture_output=True, text=True,
                          env=dict(os.environ) if env is None else env, timeout=120, stdin=subprocess.DEVNULL)


def plan_pipeline(project: Path, *, schema: Any = None, provider: str = "openai", model: str = "gpt-4o-mini",
                  extra: str = "") -> Path:
    """A planner with an output_schema, then a writer whose prompt reads `plan.topics[0]`."""
    write(project / "system_prompts" / "planner.md", "Plan the request as JSON.\n")
    write(project / "system_prompts" / "writer.md", "Write about {{ plan.topics[0] }} titled {{ plan.title }}.\n")
    write(project / "schemas" / "plan.json", json.dumps(schema or PLAN_SCHEMA, indent=2))
    return write(project / "pipelines" / "p.yml", f"""
        pipeline:
          - module: start_module
            output_name: request
          - module: planner
            id: plan
            inputs: [request]
            output_name: plan
            output_schema: ../schemas/plan.json
            model_config: {{provider: {provider}, model: {model}}}
        {extra}
          - module: writer
            inputs: [plan]
            output_name: post
            model_config: {{provider: {provider}, model: {model}}}
        """)


def chat_requests(server: FakeLLMServer) -> list[Any]:
    return [r for r in server.requests if r.api is not None]


# ---------------------------------------------------------------- the schema helpers


INSTANCE_SCHEMAS = [
    PLAN_SCHEMA,
    {"type": "array", "items": {"type": "integer", "minimum": 3, "maximum": 9}, "minItems": 2},
    {"type": "string", "enum": ["yes", "no"]},
    {"type": "string", "minLength": 12, "maxLength": 20},
    {"type": "string", "format": "date"},
    {"type": "number", "exclusiveMinimum": 5, "maximum": 7.5},
    {"type": "integer", "minimum": 10, "multipleOf": 4},
    {"const": {"fixed": True}},
    {"type": "boolean"},
    {"type": "null"},
    {"anyOf": [{"type": "integer", "minimum": 2}, {"type": "string"}]},
    {"oneOf": [{"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]}]},
    {"type": ["null", "string"], "minLength": 2},
    {"type": "object", "properties": {"item": {"$ref": "#/$defs/item"}}, "required": ["item"],
     "$defs": {"item": {"type": "object", "properties": {"n": {"type": "integer", "minimum": 1}}, "required": ["n"]}}},
    {"allOf": [{"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]},
               {"properties": {"b": {"type": "integer"}}, "required": ["b"]}]},
    {"type": "object", "minProperties": 1, "properties": {"x": {"type": "boolean"}}},
    {"type": "array", "items": {"type": "string"}, "minItems": 3, "uniqueItems": True},
    {"type": "object", "properties": {"review": {"type": "object", "properties": {
        "score": {"type": "integer", "minimum": 1, "maximum": 10},
        "verdict": {"enum": ["accept", "revise"]}}, "required": ["score", "verdict"]}}, "required": ["review"]},
]


@pytest.mark.parametrize("schema", INSTANCE_SCHEMAS)
def test_echo_instances_match_their_schema(schema: dict[str, Any]) -> None:
    instance = example_instance(schema)
    jsonschema.validate(instance, schema, format_checker=jsonschema.FormatChecker())
    assert example_instance(schema) == instance  # deterministic


def test_strict_only_when_openai_allows_it() -> None:
    assert strict_allowed(PLAN_SCHEMA)
    assert not strict_allowed({**PLAN_SCHEMA, "additionalProperties": True})
    assert not strict_allowed({**PLAN_SCHEMA, "required": ["topics"]})  # title not required
    nested_open = {**PLAN_SCHEMA, "properties": {**PLAN_SCHEMA["properties"],
                                                 "meta": {"type": "object", "properties": {}}},
                   "required": ["topics", "title", "meta"]}
    assert not strict_allowed(nested_open)
    assert not strict_allowed({"type": "array", "items": {"type": "string"}})  # the root must be an object
    pattern = {**PLAN_SCHEMA, "properties": {**PLAN_SCHEMA["properties"], "title": {"type": "string",
                                                                                      "minLength": 3}}}
    assert not strict_allowed(pattern)  # a keyword outside the conservative list
    sent = openai_response_format({**PLAN_SCHEMA, "$schema": "https://json-schema.org/draft/2020-12/schema",
                                   "title": "the plan!"})
    assert sent["json_schema"]["name"] == "the_plan" and "$schema" not in sent["json_schema"]["schema"]


def test_fenced_answers_are_parsed() -> None:
    assert parse_answer('```json\n{"a": 1}\n```') == ({"a": 1}, None)
    assert parse_answer('{"a": [1, 2]}') == ({"a": [1, 2]}, None)
    value, problem = parse_answer("Sure! Here it is: {")
    assert value is None and problem is not None and "not valid JSON" in problem


# ---------------------------------------------------------------- the wire formats over the real SDKs


@pytest.mark.parametrize("stream", [False, True])
def test_openai_gets_response_format_and_the_output_is_the_value(project: Path, fake_server: FakeLLMServer,
                                                                server_config: Path, keys: dict[str, str],
                                                                stream: bool) -> None:
    plan_pipeline(project)
    fake_server.queue_reply(VALID, match="Plan the request")
    result, _ = run_library("pipelines/p.yml", config=server_config, inputs={"request": "bees"}, stream=stream)
    assert result.status == "completed", [r.error for r in result.records]
    assert result.outputs["plan"] == {"topics": ["bees", "honey"], "title": "Bees"}
    planner, writer = chat_requests(fake_server)
    assert planner.stream is stream
    assert planner.response_format == {"type": "json_schema", "json_schema": {
        "name": "output", "schema": PLAN_SCHEMA, "strict": True}}
    assert "output_schema" not in planner.body  # ours, never forwarded raw
    assert writer.response_format is None  # a step without a schema is a plain call
    assert "Write about bees titled Bees." in (writer.system or "")  # {{ plan.topics[0] }} rendered
    assert '"topics": [\n    "bees"' in writer.last_user_text  # the value shown as JSON


def test_openai_strict_false_when_the_schema_does_not_allow_it(project: Path, fake_server: FakeLLMServer,
                                                               server_config: Path, keys: dict[str, str]) -> None:
    loose = {"type": "object", "properties": {"topics": {"type": "array", "items": {"type": "string"},
                                                         "minItems": 1}, "title": {"type": "string"}},
             "required": ["topics"]}
    plan_pipeline(project, schema=loose)
    fake_server.queue_reply(VALID, match="Plan the request")
    result, _ = run_library("pipelines/p.yml", config=server_config, inputs={"request": "bees"})
    assert result.status == "completed"
    assert chat_requests(fake_server)[0].response_format["json_schema"]["strict"] is False


@pytest.mark.parametrize("stream", [False, True])
def test_anthropic_forces_a_tool_and_the_output_is_its_input(project: Path, fake_server: FakeLLMServer,
                                                             server_config: Path, keys: dict[str, str],
                                                             stream: bool) -> None:
    plan_pipeline(project, provider="anthropic", model="claude-haiku-4-5")
    fake_server.queue_reply(VALID, match="Plan the request")
    result, _ = run_library("pipelines/p.yml", config=server_config, inputs={"request": "bees"}, stream=stream)
    assert result.status == "completed", [r.error for r in result.records]
    assert result.outputs["plan"] == {"topics": ["bees", "honey"], "title": "Bees"}
    planner = chat_requests(fake_server)[0]
    assert planner.body["tools"] == [{"name": "structured_output", "description": planner.body["tools"][0][
        "description"], "input_schema": PLAN_SCHEMA}]
    assert planner.body["tool_choice"] == {"type": "tool", "name": "structured_output"}
    assert planner.stream is False  # a forced tool's call is not streamed
    assert "output_schema" not in planner.body


def test_anthropic_wraps_a_schema_that_is_not_an_object(project: Path, fake_server: FakeLLMServer,
                                                        server_config: Path, keys: dict[str, str]) -> None:
    schema = {"type": "array", "items": {"type": "string"}, "minItems": 1}
    plan_pipeline(project, schema=schema, provider="anthropic", model="claude-haiku-4-5")
    write(project / "system_prompts" / "writer.md", "Write about {{ plan[0] }}.\n")
    fake_server.queue_reply(json.dumps({"value": ["wasps"]}), match="Plan the request")
    result, _ = run_library("pipelines/p.yml", config=server_config, inputs={"request": "bees"})
    assert result.status == "completed", [r.error for r in result.records]
    assert result.outputs["plan"] == ["wasps"]
    tool = chat_requests(fake_server)[0].body["tools"][0]
    assert tool["input_schema"] == {"type": "object", "properties": {"value": schema}, "required": ["value"]}


# ---------------------------------------------------------------- the correction loop


@pytest.mark.parametrize("first", ['{"topics": "x", "title": "Bees"}', "Sure, here you go: topics are bees"])
def test_a_wrong_answer_is_sent_back_with_the_validators_message(project: Path, fake_server: FakeLLMServer,
                                                                 server_config: Path, keys: dict[str, str],
                                                                 first: str) -> None:
    plan_pipeline(project)
    fake_server.queue_reply(first, match="Plan the request")
    fake_server.queue_reply(VALID, match="Plan the request")
    result, _ = run_library("pipelines/p.yml", config=server_config, inputs={"request": "bees"})
    assert result.status == "completed", [r.error for r in result.records]
    assert result.outputs["plan"]["topics"] == ["bees", "honey"]
    first_request, second_request = chat_requests(fake_server)[:2]
    assert second_request.messages[:-2] == first_request.messages
    assert second_request.messages[-2] == {"role": "assistant", "content": first}
    expected = "at $.topics: 'x' is not of type 'array'" if first.startswith("{") else "not valid JSON"
    assert expected in second_request.last_user_text
    record = next(r for r in result.records if r.id == "plan")
    assert [a["error"] is None for a in record.details["output_attempts"]] == [False, True]
    assert record.details["output_attempts"][0]["answer"] == first
    assert [m["role"] for m in record.messages] == ["system", "user", "assistant", "user"]  # each sent once


def test_retries_exhausted_fail_the_step_at_its_line(project: Path, fake_server: FakeLLMServer,
                                                     server_config: Path, keys: dict[str, str]) -> None:
    plan_pipeline(project, extra="    output_retries: 1")
    fake_server.default_reply = '{"topics": "x", "title": "Bees"}'
    proc = cli(project, "run", "pipelines/p.yml", "--input", "request=bees")
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    assert ("pipelines/p.yml:4: step 'plan': output does not match output_schema at $.topics: 'x' is not of "
            "type 'array' (after 2 answers)") in proc.stdout + proc.stderr
    planner_calls = [r for r in chat_requests(fake_server) if r.response_format is not None]
    assert len(planner_calls) == 2  # the first answer and one correction (output_retries: 1)
    log = json.loads(next((project / "logs").glob("*.json")).read_text())
    plan = next(s for s in log["steps"] if s["id"] == "plan")
    assert plan["status"] == "failed" and len(plan["details"]["output_attempts"]) == 2


def test_dry_run_completes_with_a_schema_valid_instance(project: Path, fake_server: FakeLLMServer) -> None:
    plan_pipeline(project)
    env = {k: v for k, v in os.environ.items() if k not in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY")}
    proc = cli(project, "run", "pipelines/p.yml", "--dry-run", "--input", "request=bees", env=env)
    assert proc.returncode == 0, proc.stderr
    assert "Write about example titled example." in proc.stdout
    log = json.loads(next((project / "logs").glob("*.json")).read_text())
    plan = next(s for s in log["steps"] if s["id"] == "plan")
    jsonschema.validate(plan["output"], PLAN_SCHEMA)
    assert fake_server.requests == []


def test_a_python_module_may_declare_its_schema(project: Path) -> None:
    write(project / "modules" / "scorer.py", """
        from orchestrai import Message

        output_schema = {"type": "object", "properties": {"score": {"type": "integer", "minimum": 1}},
                         "required": ["score"]}

        async def run(ctx, inputs):
            value = await ctx.complete_structured([Message("user", "score it")])
            return value if ctx.step.options.get("honest") else {"score": "high"}
        """)
    pipeline = write(project / "pipelines" / "s.yml", """
        defaults: {provider: echo, model: echo}
        pipeline:
          - {module: scorer, output_name: honest, options: {honest: true}}
          - {module: scorer, output_name: liar}
        """)
    result, _ = run_library(pipeline)
    records = {r.id: r for r in result.records}
    assert result.outputs["honest"] == {"score": 1}
    assert records["liar"].status == "failed"
    assert "step 'liar': output does not match output_schema at $.score: 'high' is not of type 'integer'" in str(
        records["liar"].error)


# ---------------------------------------------------------------- validation


def validate(project: Path, path: Path) -> subprocess.CompletedProcess[str]:
    return cli(project, "validate", str(path.relative_to(project)))


def step_with(project: Path, lines: str) -> Path:
    """pipelines/v.yml: one planner step (its `- module` on line 2) plus `lines` under it, from line 4."""
    write(project / "system_prompts" / "planner.md", "Plan.\n")
    path = project / "pipelines" / "v.yml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("pipeline:\n  - module: planner\n    output_name: plan\n" +
                    "".join(f"    {line}\n" for line in lines.splitlines()), encoding="utf-8")
    return path


@pytest.mark.parametrize(("lines", "expected"), [
    ("output_schema: {type: object, properties: {a: {type: 5}}}",
     r"pipelines/v\.yml:4: step 'plan': output_schema is not a valid JSON Schema at \$\.properties\.a\.type: 5 is "
     r"not valid"),
    ("output_schema:\n  type: object\n  required: 7",
     r"pipelines/v\.yml:6: step 'plan': output_schema is not a valid JSON Schema at \$\.required: 7 is not of type"),
    ("output_schema: schemas/missing.json",
     r"pipelines/v\.yml:4: step 'plan': output_schema file 'schemas/missing\.json' not found"),
    ("output_schema: ../../outside.json",
     r"pipelines/v\.yml:4: step 'plan': output_schema path '\.\./\.\./outside\.json' is outside the pipeline's "
     r"folder and the project folder"),
    ("output_schema: /etc/schema.json", r"pipelines/v\.yml:4: step 'plan': output_schema path '/etc/schema\.json' "
                                        r"is absolute"),
    ("output_schema: schema.txt", r"pipelines/v\.yml:4: step 'plan': output_schema file 'schema\.txt' must end in"),
    ("output_retries: -1", r"pipelines/v\.yml:4: pipeline\.0\.output_retries: input should be greater than or "
                           r"equal to 0"),
])
def test_bad_schemas_are_validation_errors_at_their_line(project: Path, lines: str, expected: str) -> None:
    write(project.parent / "outside.json", "{}")  # exists: refused for where it is, not for being missing
    proc = validate(project, step_with(project, lines))
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    assert re.search(expected, proc.stderr), proc.stderr
    if "output_schema" in lines:  # output_retries gets pydantic's message, as every other number does
        assert "hint:" in proc.stderr


def test_an_invalid_schema_file_is_reported_inside_it(project: Path) -> None:
    write(project / "schemas" / "bad.yml", "type: object\nproperties:\n  topics:\n    type: list\n")
    write(project / "schemas" / "broken.json", '{"type": "object",\n  "required": [}\n')
    pipeline = step_with(project, "output_schema: ../schemas/bad.yml")
    with (project / "pipelines" / "v.yml").open("a") as out:
        out.write("  - {module: planner, output_name: two, output_schema: ../schemas/broken.json}\n"
                  "  - {module: planner, output_name: three, output_schema: ../schemas/bad.yml}\n")
    proc = validate(project, pipeline)
    assert proc.returncode == 2
    assert re.search(r"^schemas/bad\.yml:4: output_schema is not a valid JSON Schema at \$\.properties\.topics\."
                     r"type: 'list' is not valid", proc.stderr, re.M), proc.stderr
    assert re.search(r"^schemas/broken\.json:2: invalid JSON", proc.stderr, re.M), proc.stderr
    assert proc.stderr.count("schemas/bad.yml:4") == 1  # a shared file is reported once


def test_valid_schemas_load_and_schema_covers_the_keys(project: Path) -> None:
    write(project / "schemas" / "plan.yml", "type: object\nproperties: {topics: {type: array}}\n")
    pipeline = step_with(project, "output_schema: ../schemas/plan.yml\noutput_retries: 0")
    graph = Project.open(None).load(pipeline)
    step = graph.pipeline.steps[0]
    assert step.output_schema == {"type": "object", "properties": {"topics": {"type": "array"}}}
    assert step.output_retries == 0
    schema = json.loads(cli(project, "schema").stdout)
    keys = schema["$defs"]["StepSpec"]["properties"]
    assert {"output_schema", "output_retries"} <= set(keys)
