"""Module descriptions and the catalog: prompt front matter (never sent to the model, lines kept),
Python modules' attributes and docstrings, sub-pipelines, tools, `orchestrai modules [--json]`."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from conftest import REPO, write
from fake_llm_server import FakeLLMServer
from helpers import run_library
from test_cli import cli

from orchestrai.api import ToolSpec
from orchestrai.catalog import catalog
from orchestrai.modules.chameleon import ChameleonModule
from orchestrai.modules.front_matter import prompt_body, split_front_matter
from orchestrai.pipeline.spec import Step
from orchestrai.project import Project

WORD_COUNT = '''
    """Counts the words of every input.

    A second paragraph that the catalog leaves out.
    """

    inputs = ["text"]
    calls_model = False


    async def run(ctx, inputs):
        return {name: len(str(value).split()) for name, value in inputs.items()}
    '''

SCORED = '''
    class Scorer:
        """Not this docstring: the attribute wins."""

        description = "Scores a draft from 1 to 10."
        output_schema = {"type": "object", "properties": {"score": {"type": "integer"}}, "required": ["score"]}

        async def run(self, ctx, inputs):
            return {"score": 7}


    module = Scorer()
    '''


def chat_requests(server: FakeLLMServer) -> list[Any]:
    return [r for r in server.requests if r.api is not None]


def step_for(module: str, inputs: tuple[str, ...] = ("request",)) -> Step:
    return Step("s", module, "s", inputs, None, {}, {})


# ---------------------------------------------------------------- front matter


def test_front_matter_never_reaches_the_model(project: Path, fake_server: FakeLLMServer, server_config: Path,
                                              keys: dict[str, str]) -> None:
    shipped = (project / "system_prompts" / "translator.md").read_text(encoding="utf-8")
    assert shipped.startswith("---\ndescription:")  # the shipped prompt has front matter ...

    result, _ = run_library("pipelines/translation.yml", config=server_config, inputs={"request": "Good morning"})

    assert result.status == "completed", [r.error for r in result.records]
    systems = [request.system or "" for request in chat_requests(fake_server)]
    assert len(systems) == 2
    for system in systems:  # ... and the model gets the prompt alone, from its first line
        assert system.startswith("You are a professional translator. Translate the text under")
        assert "description:" not in system and "---" not in system and "inputs:" not in system
    assert sorted(s.split("into\n", 1)[1].split(".", 1)[0] for s in systems) == ["French", "Spanish"]


def test_a_markdown_rule_at_the_top_is_prompt_text_not_front_matter(tmp_path: Path) -> None:
    prompt = write(tmp_path / "p.md", "---\nYou are terse.\n---\nAnswer {{ request }}.\n")
    module = ChameleonModule("p", prompt)
    assert module.render({"request": "x"}, supplement=None, step_id="s") == "---\nYou are terse.\n---\nAnswer x.\n"
    assert module.description is None and module.check(step_for("p")) == []


def test_template_lines_stay_the_lines_of_the_file(tmp_path: Path) -> None:
    prompt = write(tmp_path / "p.md", "---\ndescription: Says hello.\ninputs: [request]\n---\nHello\n{% if %}\n")
    problems = ChameleonModule("p", prompt).check(step_for("p"))
    assert [(p.line, p.message.split(":")[0]) for p in problems] == [(6, "prompt template syntax error")]

    prompt = write(tmp_path / "q.md", "---\ndescription: >-\n  Two\n  lines.\n---\nfine\n{{ request.a.b }}\n")
    with pytest.raises(Exception, match=rf"{prompt}:7: prompt template error"):
        ChameleonModule("q", prompt).render({"request": {}}, supplement=None, step_id="s")
    assert ChameleonModule("q", prompt).render({"request": {"a": {"b": 1}}}, supplement=None, step_id="s") == \
        "fine\n1\n"


def test_bad_front_matter_is_a_problem_at_its_line(project: Path) -> None:
    write(project / "system_prompts" / "sloppy.md", """
        ---
        description: Summarizes.
        descripton: typo
        inputs: request
        output_schema: [not, a, mapping]
        ---
        Summarize {{ request }}.
        """)
    write(project / "pipelines" / "p.yml", """
        pipeline:
          - {module: start_module, output_name: request}
          - {module: sloppy, inputs: [request], output_name: summary}
        """)

    _, problems = Project.open(None).check("pipelines/p.yml")

    shown = [(Path(p.path).name, p.line, p.message) for p in problems]
    assert ("sloppy.md", 3, "prompt front matter: unknown key 'descripton'") in shown
    assert ("sloppy.md", 4, "prompt front matter: inputs must be a list of input names") in shown
    assert ("sloppy.md", 5, "prompt front matter: output_schema must be a JSON Schema mapping") in shown
    assert any(p.hint == "did you mean 'description'?" for p in problems)


def test_a_front_matter_output_schema_makes_the_prompt_structured(project: Path, fake_server: FakeLLMServer,
                                                                  server_config: Path, keys: dict[str, str]) -> None:
    write(project / "system_prompts" / "rater.md", """
        ---
        description: Rates the request.
        output_schema:
          type: object
          properties: {score: {type: integer}}
          required: [score]
          additionalProperties: false
        ---
        Rate it.
        """)
    write(project / "pipelines" / "p.yml", """
        pipeline:
          - {module: start_module, output_name: request}
          - {module: rater, inputs: [request], output_name: rating}
        """)
    fake_server.queue_reply('{"score": 8}')

    result, _ = run_library("pipelines/p.yml", config=server_config, inputs={"request": "bees"})

    assert result.status == "completed", [r.error for r in result.records]
    assert result.outputs["rating"] == {"score": 8}
    (request,) = chat_requests(fake_server)
    assert request.response_format["json_schema"]["schema"]["required"] == ["score"]
    assert request.system == "Rate it.\n"


def test_every_shipped_prompt_describes_itself_and_keeps_its_text() -> None:
    for path in sorted((REPO / "system_prompts").glob("*.md")):
        text = path.read_text(encoding="utf-8")
        matter, template = split_front_matter(text, str(path))
        assert matter.description and len(matter.description) > 40, path.name
        assert not matter.problems, matter.problems
        assert template.count("\n") == text.count("\n")  # the comment spans the same lines
        assert prompt_body(text).lstrip()[:3] not in ("---", "des")


# ---------------------------------------------------------------- the catalog


def test_the_catalog_describes_modules_pipelines_and_tools(project: Path) -> None:
    write(project / "modules" / "word_count.py", WORD_COUNT)
    write(project / "modules" / "scored.py", SCORED)
    write(project / "pipelines" / "broken.yml", "pipeline:\n  - {module: nowhere, output_name: x}\n")
    tool = ToolSpec("weather.forecast", "weather__forecast", "The forecast for a city.",
                    {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]})

    found = catalog(Project.open(None), tools=[tool])

    words = found.module("word_count")
    assert words is not None and words.kind == "project"
    assert words.description == "Counts the words of every input."  # the file's docstring, first paragraph
    assert words.inputs == ("text",) and words.calls_model is False
    scorer = found.module("scored")
    assert scorer is not None and scorer.description == "Scores a draft from 1 to 10."
    assert scorer.output_schema == {"type": "object", "properties": {"score": {"type": "integer"}},
                                    "required": ["score"]}
    translator = found.module("translator")
    assert translator is not None and translator.kind == "prompt" and translator.inputs == ("request",)
    assert translator.description is not None and translator.description.startswith("Translates the request")
    engineer = found.module("engineer")
    assert engineer is not None and engineer.kind == "builtin" and engineer.inputs == ("request", "code_plan")
    assert all(module.description for module in found.modules), [m.name for m in found.modules if not m.description]
    pipelines = {entry.path.name: entry for entry in found.pipelines}
    assert pipelines["planning.yml"].inputs == ("request",) and pipelines["planning.yml"].outputs == ("markdown_plan",)
    assert pipelines["translation.yml"].outputs == ("translation_es", "translation_fr")
    assert "broken.yml" not in pipelines
    data = found.as_json()
    assert data["invalid_pipelines"][0]["path"] == "pipelines/broken.yml"
    assert data["tools"] == [{"name": "weather.forecast", "description": "The forecast for a city.",
                              "parameters": tool.parameters}]


def test_modules_json_prints_the_catalog(project: Path) -> None:
    write(project / "modules" / "word_count.py", WORD_COUNT)

    proc = cli(project, "modules", "--json")

    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert set(data) == {"modules", "pipelines", "tools"} and "calculate" in {t["name"] for t in data["tools"]}
    by_name = {module["name"]: module for module in data["modules"]}
    assert by_name["word_count"] == {"name": "word_count", "kind": "project",
                                     "source": str((project / "modules" / "word_count.py").resolve()),
                                     "description": "Counts the words of every input.", "inputs": ["text"],
                                     "output_schema": None, "calls_model": False}
    assert by_name["translator"]["kind"] == "prompt" and by_name["translator"]["calls_model"] is True
    assert by_name["start_module"]["inputs"] == [] and by_name["start_module"]["calls_model"] is False
    assert by_name["debugger"]["description"].startswith("Runs a codebase")
    pipelines = {p["path"]: p for p in data["pipelines"]}
    assert pipelines["pipelines/translation.yml"] == {
        "path": "pipelines/translation.yml", "name": "translation",
        "description": "Translate the request into two languages in parallel.", "inputs": ["request"],
        "outputs": ["translation_es", "translation_fr"]}


def test_modules_shows_each_description(project: Path) -> None:
    write(project / "modules" / "word_count.py", WORD_COUNT)

    proc = cli(project, "modules", env={**os.environ, "COLUMNS": "250"})

    assert proc.returncode == 0, proc.stderr
    rows = {line.split()[0]: line for line in proc.stdout.splitlines() if line.strip()}
    assert "Counts the words of every input." in rows["word_count"]
    assert "Translates the request into the language" in rows["translator"]
    assert "prompt" in rows["translator"] and "builtin" in rows["engineer"]


def test_the_catalog_lists_python_tools_and_mcp_servers(project: Path) -> None:
    from orchestrai.project import Project

    write(project / "tools" / "mine.py", "def shout(text: str) -> str:\n    \"\"\"Uppercase a text.\"\"\"\n"
          "    return text.upper()\n")
    write(project / "config.yml", "mcp_servers:\n  weather: {command: python, args: [w.py]}\n")
    listed = {entry["name"]: entry for entry in catalog(Project.open(project / "config.yml")).as_json()["tools"]}
    assert listed["shout"]["description"] == "Uppercase a text."
    assert listed["shout"]["parameters"]["required"] == ["text"]
    assert "calculate" in listed and "weather.*" in listed
