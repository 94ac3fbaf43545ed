"""Module lookup order: a project's modules/ wins, then plugins, built-ins, prompts; and what hides what is said."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest
from conftest import install_distribution, write
from helpers import run_library
from rich.console import Console
from test_cli import cli

from orchestrai.cli.render import modules_table
from orchestrai.engine.runner import start_inputs_needed
from orchestrai.modules.base import ENTRY_POINT_GROUP, ModuleRegistry
from orchestrai.project import Project

MINE = """
    async def run(ctx, inputs):
        return "mine"
    """

PLUGIN = """
    async def run(ctx, inputs):
        return "plugin"
    """


def plugin_env(tmp_path: Path, names: list[str]) -> Path:
    """A fake installed distribution declaring `names` as orchestrai.modules plugins."""
    lines = "".join(f"{name} = fakeplugin:run\n" for name in names)
    return install_distribution(tmp_path / "site", "fakeplugin", f"[{ENTRY_POINT_GROUP}]\n{lines}", PLUGIN)


def test_a_project_module_wins_over_the_builtin_of_its_name(project: Path) -> None:
    write(project / "modules" / "engineer.py", MINE)

    info = Project.open(None).registry.resolve("engineer")

    assert info is not None and info.kind == "project"
    assert Path(info.source) == (project / "modules" / "engineer.py").resolve()
    assert [(s.kind, s.source) for s in info.shadows] == [
        ("builtin", "orchestrai.modules.engineering.engineer:Engineer")]


def test_project_then_plugin_then_builtin_then_prompt(project: Path, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(plugin_env(tmp_path, ["engineer", "debugger", "translator"])))
    write(project / "modules" / "engineer.py", MINE)
    registry = ModuleRegistry([project])

    engineer, debugger, translator = (registry.resolve(name) for name in ("engineer", "debugger", "translator"))

    assert engineer is not None and debugger is not None and translator is not None
    assert engineer.kind == "project"
    assert [s.kind for s in engineer.shadows] == ["plugin", "builtin"]
    assert debugger.kind == "plugin" and [s.source for s in debugger.shadows] == [
        "orchestrai.modules.engineering.debugger:Debugger"]
    assert translator.kind == "plugin"  # Python wins over the prompt of the same name
    listed = {m.name: m for m in registry.all()}
    assert [s.kind for s in listed["translator"].shadows] == ["prompt"]
    assert listed["engineer"].shadows == engineer.shadows


def test_the_project_folder_beside_the_config_wins_over_the_current_directory(project: Path, tmp_path: Path) -> None:
    other = tmp_path / "elsewhere"
    write(other / "modules" / "shout.py", MINE)
    write(project / "modules" / "shout.py", MINE)

    info = ModuleRegistry([other, project]).resolve("shout")

    assert info is not None and Path(info.source) == (other / "modules" / "shout.py").resolve()
    assert [Path(s.source) for s in info.shadows] == [(project / "modules" / "shout.py").resolve()]


def test_a_changed_project_prompt_shadows_the_shipped_one_and_a_copy_does_not(project: Path) -> None:
    write(project / "system_prompts" / "translator.md", "Translate, but politely: {{ request }}\n")

    listed = {m.name: m for m in Project.open(None).registry.all()}

    assert [s.kind for s in listed["translator"].shadows] == ["prompt"]
    assert listed["task_planner"].shadows == ()  # the fixture's copy is the shipped text
    assert listed["engineer"].kind == "builtin" and listed["engineer"].shadows == ()  # its own prompt is not hidden


def test_the_modules_table_says_what_shadows_what(project: Path) -> None:
    write(project / "modules" / "engineer.py", MINE)
    out = io.StringIO()

    Console(file=out, width=200).print(modules_table(Project.open(None).registry.all()))

    row = next(line for line in out.getvalue().splitlines() if line.split()[:1] == ["engineer"])
    assert "project" in row and "modules/engineer.py" in row
    assert "shadows builtin orchestrai.modules.engineering.engineer:Engineer" in out.getvalue()


def test_orchestrai_modules_shows_the_shadowing(project: Path) -> None:
    write(project / "modules" / "engineer.py", MINE)

    proc = cli(project, "modules", env={**os.environ, "COLUMNS": "200"})

    assert proc.returncode == 0, proc.stderr
    assert "shadows builtin orchestrai.modules.engineering.engineer:Engineer" in proc.stdout


def test_a_project_start_module_is_just_a_module(project: Path) -> None:
    write(project / "modules" / "start_module.py", """
        async def run(ctx, inputs):
            return "from the project"
        """)
    write(project / "p.yml", """
        pipeline:
          - {module: start_module, output_name: request}
          - {module: shout, inputs: [request], output_name: loud}
        """)
    write(project / "modules" / "shout.py", """
        async def run(ctx, inputs):
            return inputs["request"].upper()
        """)
    graph = Project.open(None).load("p.yml")

    assert start_inputs_needed(graph, Project.open(None).registry) == []  # no run input asked for
    result, _ = run_library("p.yml", log_dir=project / "logs")

    assert result.status == "completed", [r.error for r in result.records]
    assert result.outputs == {"request": "from the project", "loud": "FROM THE PROJECT"}
