"""The condensed codebase view, the plan's run facts and the step options of the engineering modules."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import write
from helpers import run_library
from scripted import ScriptedProvider

from orchestrai.modules.engineering.view import build_view, estimate_tokens, list_files
from orchestrai.modules.engineering.workspace import plan_facts


def big_module(functions: int) -> str:
    return "\n".join(f'def handler_{i}(event: dict) -> int:\n    """Handle event kind {i}."""\n'
                     + "    total = 0\n" * 30 + "    return total\n" for i in range(functions))


def test_a_small_codebase_is_shown_whole(tmp_path: Path) -> None:
    write(tmp_path / "main.py", "print('hi')\n")
    write(tmp_path / "lib" / "util.py", "X = 1\n")
    view = build_view(tmp_path, budget_tokens=1000)
    assert view.startswith("Files (2): lib/util.py, main.py\n")
    assert "### main.py\n```python\nprint('hi')\n```" in view and "### lib/util.py\n```python\nX = 1\n```" in view


def test_a_large_codebase_fits_the_budget_with_outlines_and_the_focus_file_in_full(tmp_path: Path) -> None:
    write(tmp_path / "main.py", "from handlers import handler_0\nprint(handler_0({}))\n")
    write(tmp_path / "handlers.py", big_module(60))
    write(tmp_path / "more.py", big_module(40))
    view = build_view(tmp_path, budget_tokens=1500, focus=("main.py",))
    assert estimate_tokens(view) <= 1500
    assert "### main.py\n```python\nfrom handlers import handler_0" in view
    assert "### more.py (outline of" in view
    assert "def handler_39(event: dict) -> int:\n    \"\"\"Handle event kind 39.\"\"\"\n    ..." in view
    assert "total = 0" not in view.split("### more.py")[1].split("###")[0]
    assert "Not shown: handlers.py" in view  # even its outline did not fit; it is named, not dropped silently


def test_the_view_never_follows_symlinks_out_of_the_workspace(tmp_path: Path) -> None:
    secret = write(tmp_path / "secret.txt", "sk-test-not-for-the-model\n")
    ws = tmp_path / "ws"
    write(ws / "main.py", "print(1)\n")
    (ws / "leak.txt").symlink_to(secret)
    (ws / "dir").symlink_to(tmp_path, target_is_directory=True)
    write(ws / ".venv" / "lib" / "site.py", "X = 1\n")
    assert list_files(ws) == ["main.py"]
    assert "sk-test-not-for-the-model" not in build_view(ws, budget_tokens=1000)


def test_a_fence_inside_a_shown_file_cannot_end_its_block_early(tmp_path: Path) -> None:
    write(tmp_path / "README.md", "# T\n\n```bash\nrun\n```\n")
    assert "### README.md\n````markdown\n# T\n\n```bash\nrun\n```\n````" in build_view(tmp_path, budget_tokens=1000)


@pytest.mark.parametrize("plan, facts", [
    ("Entry point: main.py\nRun: python main.py 100\n", ("main.py", ["100"])),
    ("**Entry point:** `app.py`\n- Run: `python app.py --celsius 37`\n", ("app.py", ["--celsius", "37"])),
    ("Run: python3 cli.py 'hello world'\n", ("cli.py", ["hello world"])),
    ("Entry point: main.py\nRun: rm -rf / && python main.py\n", ("main.py", None)),  # not a python command: ignored
    ("Just write something nice.\n", (None, None)),
])
def test_plan_facts_read_the_entry_point_and_run_arguments(plan: str, facts: tuple) -> None:
    assert plan_facts([plan]) == facts


def test_an_unknown_step_option_fails_with_a_did_you_mean(project: Path) -> None:
    write(project / "config.yml", "default_model_config: {model: gpt-4o-mini}\n")
    write(project / "p.yml", """
        pipeline:
          - {module: start_module, output_name: request}
          - {module: engineer, inputs: [request], output_name: code, options: {max_iteration: 3, run_timeout_s: -1}}
        """)
    provider = ScriptedProvider()
    result, _ = run_library("p.yml", inputs={"request": "x"}, providers={"openai": provider})
    code = next(r for r in result.records if r.id == "code")
    assert code.status == "failed" and provider.calls == []
    assert "unknown option 'max_iteration' (did you mean 'max_iterations'?)" in code.error
    assert "option 'run_timeout_s': Input should be greater than 0" in code.error
