"""Validation: every bad input is reported at once, as path:line with a hint, through the library and the CLI."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import write
from typer.testing import CliRunner

from orchestrai.cli.app import app
from orchestrai.errors import ValidationFailed
from orchestrai.project import Project

runner = CliRunner()


def problems_of(path: Path) -> list[str]:
    graph, problems = Project.open(None).check(path)
    assert graph is None
    return [str(p) for p in problems]


def test_example_pipelines_are_valid(project: Path) -> None:
    for name in ("planning", "translation"):
        graph, problems = Project.open(None).check(f"pipelines/{name}.yml")
        assert problems == [] and graph is not None
    summary = Project.open(None).load("pipelines/translation.yml").summary()
    assert (summary.steps, summary.edges, summary.widest_layer, summary.longest_chain) == (3, 2, 2, 2)


def test_yaml_syntax_error_names_the_line(project: Path) -> None:
    path = write(project / "p.yml", """
        pipeline:
          - module: start_module
            inputs: [request
            output_name: request
        """)
    [problem] = problems_of(path)
    assert problem.startswith("p.yml:4: YAML syntax error") or problem.startswith("p.yml:3: YAML syntax error")


def test_all_problems_reported_at_once(project: Path) -> None:
    path = write(project / "bad.yml", """
        pipeline:
          - module: start_module
            inputs: []
            output_name: request
          - module: task_planer
            inputs: [request]
            output_name: plan
          - module: scrutinizer
            inputs: [request, plam]
            output_name: plan
          - module: enhancer
            input: [request]
            output_name: enhanced
          - module: enhancer
            inputs: [request]
            output_name: wrong_type
            model_config: {temperature: hot, provider: nowhere}
        """)
    problems = problems_of(path)
    text = "\n".join(problems)
    assert "bad.yml:5: step 'plan': unknown module 'task_planer'" in text
    assert "did you mean 'task_planner'?" in text
    assert "bad.yml:9: step 'plan' needs 'plam', which no step produces" in text
    assert "bad.yml:10: two steps produce 'plan'" in text
    assert "bad.yml:12: unknown key 'pipeline.3.input'" in text and "did you mean 'inputs'?" in text
    assert "bad.yml:17: pipeline.4.model_config.temperature: input should be a valid number" in text
    assert len(problems) == 5, text


def test_cycle_names_steps_in_order(project: Path) -> None:
    path = write(project / "cycle.yml", """
        pipeline:
          - {module: enhancer, inputs: [c], output_name: a}
          - {module: enhancer, inputs: [a], output_name: b}
          - {module: enhancer, inputs: [b], output_name: c}
        """)
    [problem] = problems_of(path)
    assert problem.startswith("cycle.yml:2: steps form a cycle: a -> b -> c -> a")


def test_unknown_provider_points_at_its_line(project: Path) -> None:
    path = write(project / "p.yml", """
        pipeline:
          - module: start_module
            output_name: request
          - module: translator
            inputs: [request]
            output_name: t
            model_config:
              model: llama3
              provider: ollama
        """)
    [problem] = problems_of(path)
    assert problem.startswith("p.yml:9: step 't': unknown provider 'ollama'")
    assert "add it under providers: in config.yml" in problem


def test_extra_provider_from_config_is_known(project: Path) -> None:
    write(project / "config.yml", """
        providers:
          ollama: {type: openai, base_url: "http://127.0.0.1:11434/v1"}
        """)
    path = write(project / "p.yml", """
        pipeline:
          - {module: start_module, output_name: request}
          - {module: translator, inputs: [request], output_name: t, model_config: {provider: ollama, model: llama3}}
        """)
    graph, problems = Project.open(None).check(path)
    assert problems == []
    assert graph is not None and graph.steps["t"].model_settings["provider"] == "ollama"


def test_misspelled_model_setting(project: Path) -> None:
    path = write(project / "p.yml", """
        pipeline:
          - {module: start_module, output_name: request}
          - module: translator
            inputs: [request]
            output_name: t
            model_config:
              temprature: 0.3
        """)
    [problem] = problems_of(path)
    assert problem.startswith("p.yml:7: unknown model_config key 'temprature'")
    assert "did you mean 'temperature'?" in problem


def test_prompt_using_a_variable_the_step_lacks(project: Path) -> None:
    write(project / "system_prompts" / "summarize.md", "Summarize {{ document }} for {{ audience }}.\n")
    path = write(project / "p.yml", """
        pipeline:
          - {module: start_module, output_name: document}
          - {module: summarize, inputs: [document], output_name: summary}
        """)
    [problem] = problems_of(path)
    assert problem.startswith("p.yml:3: step 'summary': prompt summarize.md uses {{ audience }}")


def test_prompt_syntax_error_names_prompt_file_and_line(project: Path) -> None:
    write(project / "system_prompts" / "broken.md", "line one\nHello {{ request \n")
    path = write(project / "p.yml", """
        pipeline:
          - {module: start_module, output_name: request}
          - {module: broken, inputs: [request], output_name: out}
        """)
    [problem] = problems_of(path)
    assert "broken.md:2: prompt template syntax error" in problem


def test_config_unknown_key_and_bad_type(project: Path) -> None:
    write(project / "config.yml", """
        providers:
          openai:
            base_urll: http://x
        max_concurrency: zero
        """)
    with pytest.raises(ValidationFailed) as caught:
        Project.open(None)
    text = str(caught.value)
    assert "config.yml:3: unknown key 'providers.openai.base_urll'" in text and "did you mean 'base_url'?" in text
    assert "config.yml:4: max_concurrency: input should be a valid integer" in text


def test_cli_validate_exit_codes_and_summary(project: Path) -> None:
    result = runner.invoke(app, ["validate", "pipelines/planning.yml", "pipelines/translation.yml"])
    assert result.exit_code == 0, result.output
    assert "pipelines/planning.yml: valid — 5 steps, 6 edges, widest parallel layer 1, longest chain 5" in result.output
    write(project / "bad.yml", "pipeline:\n  - {module: nope, output_name: x}\n")
    result = runner.invoke(app, ["validate", "bad.yml"])
    assert result.exit_code == 2
    assert "bad.yml:2: step 'x': unknown module 'nope'" in result.output
    assert "Traceback" not in result.output


def test_cli_missing_config_file(project: Path) -> None:
    result = runner.invoke(app, ["validate", "pipelines/planning.yml", "--config", "missing.yml"])
    assert result.exit_code == 2
    assert "config file missing.yml not found" in result.output


def test_not_a_pipeline(project: Path) -> None:
    path = write(project / "p.yml", "steps: []\n")
    [problem] = problems_of(path)
    assert "needs a top-level `pipeline:` list" in problem
