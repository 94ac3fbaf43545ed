"""Chameleon modules: prompt lookup, jinja2 rendering, the user message, and template errors."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import write
from helpers import run_library
from scripted import ScriptedProvider

from orchestrai.errors import PromptError
from orchestrai.modules.base import ModuleRegistry, shipped_prompt_dir
from orchestrai.modules.chameleon import ChameleonModule, user_message


def test_user_message_lists_inputs_then_supplement() -> None:
    text = user_message({"request": "Hi", "plan": {"steps": [1]}}, "Spanish")
    assert text == '## request\nHi\n\n## plan\n{\n  "steps": [\n    1\n  ]\n}\n\n## supplement\nSpanish'


def test_template_sees_inputs_and_supplement(tmp_path: Path) -> None:
    prompt = write(tmp_path / "p.md", "Lang={{ supplement }} req={{ request }} n={{ inputs|length }}")
    module = ChameleonModule("p", prompt)
    assert module.render({"request": "x"}, supplement="French", step_id="s") == "Lang=French req=x n=1"


def test_template_globals_and_filters_work(tmp_path: Path) -> None:
    prompt = write(tmp_path / "p.md", "{% for i in range(2) %}{{ i }}{% endfor %} {{ namespace(a=step).a|upper }}")
    module = ChameleonModule("p", prompt)
    for step_id in ("s", "t"):  # the same module renders again with new variables
        assert module.render({}, supplement=None, step_id=step_id) == f"01 {step_id.upper()}"


@pytest.mark.parametrize("source", [
    "Plain text, no variables.\n",
    "Lang={{ supplement }} {{- request }} \n{# a comment #}\n{{ step }}\n\n",
    "{% raw %}{{ not a variable }}{% endraw %} {{ request }}",
    "A global: {{ range }} and none: {{ nothing }}",
    "{{ request }} {% if request %}yes{% endif %}",
    "{{ inputs }} {{ missing_name }}",
])
def test_plain_prompts_render_exactly_as_jinja2_does(tmp_path: Path, source: str) -> None:
    """Text-and-names prompts skip jinja2's context for speed; the text and the errors must not change."""
    prompt = write(tmp_path / "p.md", source)
    module = ChameleonModule("p", prompt)
    variables = {"request": {"a": 1}, "nothing": None, "inputs": {"request": {"a": 1}}, "supplement": "Fr", "step": "s"}
    template = module._environment.from_string(source)
    try:
        expected = template.render(variables)
    except Exception as exc:  # noqa: BLE001 - the same error must come out as a PromptError naming the file
        with pytest.raises(PromptError, match=str(prompt)):
            module.render({"request": {"a": 1}, "nothing": None}, supplement="Fr", step_id="s")
        assert type(exc).__name__ == "UndefinedError"
        return
    assert module.render({"request": {"a": 1}, "nothing": None}, supplement="Fr", step_id="s") == expected


def test_runtime_template_error_names_file_and_line(tmp_path: Path) -> None:
    prompt = write(tmp_path / "p.md", "fine\n{{ request.missing.deeper }}\n")
    with pytest.raises(PromptError) as caught:
        ChameleonModule("p", prompt).render({"request": "x"}, supplement=None, step_id="s")
    assert f"{prompt}:2: prompt template error in step 's'" in str(caught.value)


def test_sandbox_blocks_python_internals(tmp_path: Path) -> None:
    prompt = write(tmp_path / "p.md", "{{ request.__class__.__mro__ }}")
    with pytest.raises(PromptError):
        ChameleonModule("p", prompt).render({"request": "x"}, supplement=None, step_id="s")


def test_project_prompt_wins_over_shipped(project: Path) -> None:
    write(project / "system_prompts" / "translator.md", "project translator\n")
    registry = ModuleRegistry([project])
    assert registry.prompt_path("translator") == project / "system_prompts" / "translator.md"
    assert (shipped_prompt_dir() / "translator.md").is_file()


def test_shipped_prompts_found_from_an_empty_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    registry = ModuleRegistry([tmp_path])
    info = registry.resolve("task_planner")
    assert info is not None and info.kind == "prompt"


def test_txt_prompt_and_step_options_reach_the_model(project: Path) -> None:
    write(project / "system_prompts" / "haiku.txt", "Write a haiku about {{ request }}.")
    write(project / "p.yml", """
        defaults: {model: gpt-4.1-mini, temperature: 0.9}
        pipeline:
          - {module: start_module, output_name: request}
          - {module: haiku, inputs: [request], output_name: poem, model_config: {temperature: 0.1, seed: 7}}
        """)
    provider = ScriptedProvider(replies=["an old silent pond"])
    result, _ = run_library("p.yml", inputs={"request": "autumn"}, providers={"openai": provider})
    [call] = provider.calls
    assert call.messages[0].content == "Write a haiku about autumn."
    assert call.settings["model"] == "gpt-4.1-mini" and call.settings["temperature"] == 0.1
    assert call.settings["seed"] == 7
    assert result.outputs["poem"] == "an old silent pond"
    record = next(r for r in result.records if r.id == "poem")
    assert record.cost_usd == pytest.approx((10 * 0.40 + 5 * 1.60) / 1e6)
