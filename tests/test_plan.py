"""`orchestrai plan`: a scripted planner on the loopback server; answers sent back with the validator's
problems, never-valid plans, no overwrites, `--create-modules`, `--run`, the plan rules and the review."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from conftest import write
from fake_llm_server import FakeLLMServer
from test_cli import cli

from orchestrai.config import load_config
from orchestrai.errors import ConfigError
from orchestrai.modules.front_matter import split_front_matter
from orchestrai.plan_check import Judge
from orchestrai.plan_review import cost_text, parallel_groups, review_data
from orchestrai.planner import make_plan, planner_settings
from orchestrai.project import Project

PLANNER = "You design pipelines for orchestrai"  # in every planner request's system prompt
TASK = "Translate the request into Spanish and French"

START = {"module": "start_module", "inputs": [], "output_name": "request"}
BAD = {"pipeline": [START, {"module": "summarizer_x", "inputs": ["request"], "output_name": "summary"}]}
GOOD = {"name": "two_languages", "description": "Spanish and French at once.", "pipeline": [
    START,
    {"module": "translator", "id": "spanish", "inputs": ["request"], "supplement": "Spanish",
     "output_name": "translation_es", "model_config": {"max_tokens": 100}},
    {"module": "translator", "id": "french", "inputs": ["request"], "supplement": "French",
     "output_name": "translation_fr", "model_config": {"max_tokens": 100}, "options": None}]}
HAIKU = {"name": "haiku_writer", "description": "Writes a haiku about the request.", "inputs": ["request"],
         "output_schema": None, "prompt": "Write a haiku about the text under \"## request\".\n"}


def planner_requests(server: FakeLLMServer) -> list[Any]:
    return [r for r in server.requests if r.api is not None and PLANNER in (r.system or "")]


def run_requests(server: FakeLLMServer) -> list[Any]:
    return [r for r in server.requests if r.api is not None and PLANNER not in (r.system or "")]


def files_of(project: Path) -> dict[str, bytes]:
    """Every file of the project but its logs (the planner's run is logged even when nothing is written)."""
    return {str(p.relative_to(project)): p.read_bytes() for p in sorted(project.rglob("*"))
            if p.is_file() and p.relative_to(project).parts[0] != "logs"}


def planner_log(project: Path) -> dict[str, Any]:
    (path,) = (project / "logs").glob("*-plan-*.json")
    log: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return log


# ---------------------------------------------------------------- the command over the loopback server


def test_problems_go_back_then_the_valid_plan_is_written_and_run(project: Path, fake_server: FakeLLMServer,
                                                                 server_config: Path, keys: dict[str, str]) -> None:
    fake_server.queue_reply(json.dumps(BAD), match=PLANNER)
    fake_server.queue_reply(json.dumps(GOOD), match=PLANNER)

    proc = cli(project, "plan", TASK, "-o", "pipelines/two.yml", "--run", "--yes", "-i", "request=Good morning")

    assert proc.returncode == 0, proc.stderr
    first, second = planner_requests(fake_server)
    assert "unknown module" not in first.last_user_text and TASK in first.last_user_text
    assert '"name": "translator"' in first.last_user_text  # the catalog, with the shipped prompts
    # The second request carries the validator's problem, at its line of the YAML to be written.
    assert "pipelines/two.yml:8: step 'summary': unknown module 'summarizer_x'" in second.last_user_text
    assert "  8  - module: summarizer_x" in second.last_user_text  # the YAML, numbered
    sent = first.response_format
    assert sent["type"] == "json_schema" and sent["json_schema"]["strict"] is False  # the schema is not strict-able
    assert "StepSpec" in sent["json_schema"]["schema"]["$defs"]
    assert "planner answer 1: 1 problem(s), sent back to the planner" in proc.stderr

    written = (project / "pipelines" / "two.yml").read_text(encoding="utf-8")
    graph, problems = Project.open(None).check("pipelines/two.yml")
    assert problems == [] and graph is not None and [s.id for s in graph.pipeline.steps] == [
        "request", "spanish", "french"]
    assert written.startswith("# Planned by `orchestrai plan` for this task:\n#   " + TASK + "\n")
    assert "options" not in written  # a null is left out, not written as `options: null`
    assert written in proc.stdout
    assert "parallel groups: 1: [request]  2: [spanish, french]" in proc.stdout
    assert "model calls: 2\n" in proc.stdout

    translations = run_requests(fake_server)  # `--run --yes`: the plan ran, on the same server
    assert len(translations) == 2
    assert all((r.system or "").startswith("You are a professional translator") for r in translations)
    assert "## translation_es" in proc.stdout and "Good morning" in proc.stdout
    attempts = planner_log(project)["steps"][0]["details"]["plan_attempts"]
    assert [len(a["problems"]) for a in attempts] == [1, 0] and json.loads(attempts[1]["answer"]) == GOOD


def test_a_plan_that_never_validates_exits_2_and_writes_nothing(project: Path, fake_server: FakeLLMServer,
                                                               server_config: Path, keys: dict[str, str]) -> None:
    fake_server.default_reply = json.dumps(BAD)
    before = files_of(project)

    proc = cli(project, "plan", TASK, "-o", "pipelines/new/two.yml")

    assert proc.returncode == 2, proc.stderr
    assert len(planner_requests(fake_server)) == 4  # the first answer and three more
    assert proc.stderr.count("unknown module 'summarizer_x'") == 4  # every answer's problems are shown
    assert "planner answer 4: 1 problem(s), remaining problems:" in proc.stderr
    assert "none of the planner's 4 answers validated; nothing was written" in proc.stderr
    assert files_of(project) == before and not (project / "pipelines" / "new").exists()
    assert proc.stdout == ""


def test_an_existing_file_is_replaced_only_with_force(project: Path, fake_server: FakeLLMServer,
                                                     server_config: Path, keys: dict[str, str]) -> None:
    target = write(project / "pipelines" / "two.yml", "# mine\n")

    proc = cli(project, "plan", TASK, "-o", "pipelines/two.yml")

    assert proc.returncode == 2 and "pipelines/two.yml exists" in proc.stderr and "--force" in proc.stderr
    assert fake_server.requests == [] and target.read_text() == "# mine\n"  # refused before anything is spent

    fake_server.queue_reply(json.dumps(GOOD), match=PLANNER)
    proc = cli(project, "plan", TASK, "-o", "pipelines/two.yml", "--force")

    assert proc.returncode == 0, proc.stderr
    assert target.read_text().startswith("# Planned by `orchestrai plan`")


def test_run_without_a_terminal_needs_yes(project: Path, fake_server: FakeLLMServer, server_config: Path,
                                          keys: dict[str, str]) -> None:
    proc = cli(project, "plan", TASK, "--run")

    assert proc.returncode == 2
    assert "no terminal to ask on" in proc.stderr and "--yes" in proc.stderr
    assert fake_server.requests == []


def test_create_modules_writes_the_new_prompt_with_the_plan(project: Path, fake_server: FakeLLMServer,
                                                           server_config: Path, keys: dict[str, str]) -> None:
    with server_config.open("a", encoding="utf-8") as config:
        config.write("planner: {model: gpt-4.1, max_tokens: 3000}\n")
    clash = {**HAIKU, "name": "translator"}
    haiku_plan = {"pipeline": [START, {"module": "haiku_writer", "inputs": ["request"], "output_name": "haiku"}]}
    fake_server.queue_reply(json.dumps({"pipeline": haiku_plan, "modules": [clash]}), match=PLANNER)
    fake_server.queue_reply(json.dumps({"pipeline": haiku_plan, "modules": [HAIKU]}), match=PLANNER)
    translator = (project / "system_prompts" / "translator.md").read_bytes()

    proc = cli(project, "plan", "A haiku about the request", "--create-modules", "-o", "pipelines/haiku.yml")

    assert proc.returncode == 0, proc.stderr
    first, second = planner_requests(fake_server)
    assert first.model == "gpt-4.1" and first.body["max_tokens"] == 3000  # config `planner:`
    schema = first.response_format["json_schema"]["schema"]
    assert schema["required"] == ["pipeline", "modules"] and "StepSpec" in schema["$defs"]
    assert "new module 'translator' already exists in the catalog" in second.last_user_text
    assert (project / "system_prompts" / "translator.md").read_bytes() == translator  # never over a prompt
    created = project / "system_prompts" / "haiku_writer.md"
    matter, _ = split_front_matter(created.read_text(encoding="utf-8"), str(created))
    assert matter.description == HAIKU["description"] and matter.inputs == ("request",)
    assert created.read_text(encoding="utf-8").endswith("---\n" + HAIKU["prompt"])
    assert "── new prompt module: system_prompts/haiku_writer.md ──" in proc.stdout
    assert "wrote pipelines/haiku.yml, system_prompts/haiku_writer.md" in proc.stderr
    assert Project.open(None).check("pipelines/haiku.yml")[1] == []


def test_a_claude_planner_answers_through_the_forced_tool(project: Path, fake_server: FakeLLMServer,
                                                          server_config: Path, keys: dict[str, str]) -> None:
    with server_config.open("a", encoding="utf-8") as config:
        config.write("planner: {model: claude-haiku-4-5, max_tokens: 2000}\n")
    fake_server.queue_reply(json.dumps(GOOD), match=PLANNER)

    outcome = asyncio.run(make_plan(Project.open(None), TASK, target=project / "pipelines" / "two.yml"))

    assert outcome.plan is not None and outcome.result.status == "completed", outcome.error
    (request,) = planner_requests(fake_server)
    assert request.api == "anthropic" and request.body["tool_choice"]["type"] == "tool"
    assert "StepSpec" in request.body["tools"][0]["input_schema"]["$defs"]
    assert not (project / "pipelines" / "two.yml").exists()  # make_plan writes nothing; write_plan does
    assert outcome.result.totals.cost_usd is not None and outcome.result.totals.cost_usd > 0


def test_the_planner_needs_a_known_provider(project: Path) -> None:
    write(project / "config.yml", "planner: {provider: nowhere, model: x}\n")

    with pytest.raises(ConfigError, match="planner: unknown provider 'nowhere'"):
        planner_settings(load_config("config.yml"))
    write(project / "config.yml", "default_model_config: {model: gpt-4o-mini}\nplanner: {temperature: 0}\n")
    assert planner_settings(load_config("config.yml")) == {"provider": "openai", "model": "gpt-4o-mini",
                                                           "temperature": 0}


# ---------------------------------------------------------------- the plan rules (no model needed)


def judged(project: Path, answer: Any, *, create_modules: bool = True) -> list[str]:
    judge = Judge(Project.open(None), project / "pipelines" / "planned.yml", create_modules)
    candidate = judge(answer if isinstance(answer, str) else json.dumps(answer))
    assert not candidate.ok
    assert not any(".plan-" in str(p) or "orchestrai-plan-" in str(p) for p in candidate.problems)  # no temp names
    return [f"{Path(p.path).as_posix()}:{p.line}: {p.message}" for p in candidate.problems]


def test_a_plan_is_data_no_paths_urls_or_python_files_in_options(project: Path) -> None:
    before = files_of(project)
    step = {"module": "translator", "inputs": ["request"], "output_name": "out",
            "options": {"a": "https://example.com/simple", "b": ["/etc/passwd"], "c": {"d": "../../x"},
                        "e": "helper.py", "fine": "workspace/sub"}}
    problems = judged(project, {"pipeline": [START, step]})

    assert [p.split(": options may not hold ")[1].split(" (")[0] for p in problems] == [
        "a URL", "an absolute path", "a path outside the project", "a Python file name"]
    assert [p.split(":")[1] for p in problems] == ["9", "10", "12", "13"]  # each value's line
    assert files_of(project) == before  # the temporary file is gone


def test_created_modules_must_be_new_well_formed_and_used(project: Path) -> None:
    broken = {**HAIKU, "name": "broken_prompt", "prompt": "Line one\n{% if %}\n"}
    problems = judged(project, {"pipeline": {"pipeline": [
        START, {"module": "broken_prompt", "inputs": ["request"], "output_name": "x"}]},
        "modules": [broken, {**HAIKU, "name": "unused"}]})

    assert "pipelines/planned.yml:None: new module 'unused' is created but no step uses it" in problems
    # The new prompt's template error is at its line in the file that would be written (after its front matter).
    assert any(p.startswith("system_prompts/broken_prompt.md:7: prompt template syntax error") for p in problems)
    assert not (project / "system_prompts" / "broken_prompt.md").exists()

    problems = judged(project, {"pipeline": {"pipeline": [START]}, "modules": [{**HAIKU, "name": "../evil"}]})
    assert problems[0].startswith("pipelines/planned.yml:None: modules at $.modules[0].name: '../evil' does not match")


def test_answers_that_are_not_plans(project: Path) -> None:
    assert judged(project, "Sure! Here is your plan:")[0].startswith(
        "pipelines/planned.yml:None: the answer is not JSON")
    assert "a pipeline file needs a top-level `pipeline:` list of steps" in judged(project, {"steps": []})[0]
    write(project / "pipelines" / "planned.yml", "pipeline:\n  - {module: start_module, output_name: request}\n")
    problems = judged(project, {"pipeline": [START, {"pipeline": "planned.yml", "inputs": ["request"],
                                                     "output_name": "again"}]}, create_modules=False)
    assert "pipelines/planned.yml:5: a plan cannot run the file it is written to" in problems


# ---------------------------------------------------------------- the review


def test_the_review_counts_calls_honestly(project: Path) -> None:
    write(project / "system_prompts" / "outline.md", "Outline the request.\n")
    write(project / "system_prompts" / "topic_writer.md", "Write about {{ topic }}.\n")
    write(project / "modules" / "word_count.py", "async def run(ctx, inputs):\n    return 1\n")
    write(project / "pipelines" / "p.yml", """
        pipeline:
          - {module: start_module, output_name: request}
          - module: outline
            inputs: [request]
            output_name: plan
            output_schema: {type: object, properties: {topics: {type: array, items: {type: string}}},
                            required: [topics]}
          - {module: topic_writer, foreach: plan.topics, as: topic, output_name: drafts}
          - {module: outline, id: extra, inputs: [plan], when: "plan.topics | length > 2", output_name: extra}
          - loop:
              max_iterations: 3
              steps: [{module: outline, inputs: [request], output_name: draft}]
            output_name: final
          - {module: word_count, inputs: [request], output_name: counts}
        """)
    project_ = Project.open(None)
    graph, problems = project_.check("pipelines/p.yml")
    assert problems == [] and graph is not None

    data = review_data(graph, project_.registry, project_.config)

    assert parallel_groups(graph) == "1: [request]  2: [plan, final, counts]  3: [drafts, extra]"
    assert data["calls"] == {"low": 2, "high": 7}  # plan 1-3 (output corrections), extra 0-1, the loop 1-3
    assert [(p["over"], p["low"], p["high"]) for p in data["per_item"]] == [("plan.topics (drafts)", 1, 1)]
    assert data["uncounted"] == ["counts (word_count, a Python module)"]
    assert data["cost_usd"] is not None and data["cost_usd"] > 0


@pytest.mark.parametrize("model_config, expected", [
    ("{model: gpt-4o-mini, max_tokens: 1000}", "$0.0006"),  # (3 prompt tokens x 0.15 + 1000 x 0.60) / 1M
    ("{model: mystery-model, max_tokens: 1000}", "unknown: no price for mystery-model (add it under pricing:"),
    ("{provider: echo, model: echo}", "$0.0000"),  # free, honestly
])
def test_the_worst_case_cost_uses_the_configured_prices(project: Path, model_config: str, expected: str) -> None:
    write(project / "system_prompts" / "hello.md", "Say hi.\n")
    write(project / "pipelines" / "p.yml", f"""
        pipeline:
          - {{module: start_module, output_name: request}}
          - {{module: hello, inputs: [request], output_name: hi, model_config: {model_config}}}
        """)
    project_ = Project.open(None)
    graph, problems = project_.check("pipelines/p.yml")
    assert problems == [] and graph is not None
    from orchestrai.plan_review import estimate

    assert cost_text(estimate(graph, project_.registry, project_.config)).startswith(expected)
