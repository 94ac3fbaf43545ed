"""Module names become file names: one that could leave its folder is refused, by validation and by the registry."""

from __future__ import annotations

import builtins
import os
from pathlib import Path
from typing import Any

import pytest
from conftest import write
from test_cli import assert_no_traceback, cli

from orchestrai.errors import PipelineError
from orchestrai.modules.base import ModuleRegistry
from orchestrai.names import is_module_name
from orchestrai.project import Project

BAD_NAMES = ["../../etc/passwd", "../secret", "sub/prompt", "/etc/passwd", ".hidden", "a..b", "..", "trailing.",
             "back\\slash", "new\nline", "", "spa ce"]


@pytest.mark.parametrize("name", ["translator", "task_planner", "my-module", "v2.translator", "3d", "_private"])
def test_ordinary_names_are_module_names(name: str) -> None:
    assert is_module_name(name)


@pytest.mark.parametrize("name", BAD_NAMES)
def test_names_that_are_paths_are_not_module_names(name: str) -> None:
    assert not is_module_name(name)


def test_validate_reports_a_path_as_module_name_at_its_line(project: Path) -> None:
    write(project / "p.yml", """
        pipeline:
          - {module: start_module, output_name: request}
          - module: "../../etc/passwd"
            inputs: [request]
            output_name: out
        """)

    proc = cli(project, "validate", "p.yml")

    assert proc.returncode == 2, proc.stderr
    assert_no_traceback(proc)
    first = proc.stderr.splitlines()[0]
    assert first.startswith("p.yml:3: pipeline.1.module: '../../etc/passwd' is not allowed: a module name may "
                            "contain only letters, digits, '_', '-' and '.'"), proc.stderr
    assert "create" not in proc.stderr and "passwd.md" not in proc.stderr


@pytest.mark.parametrize("name", BAD_NAMES)
def test_the_registry_never_looks_outside_its_folders(project: Path, tmp_path: Path, name: str,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    # A prompt file waiting outside the project, where the name would lead.
    write(tmp_path / "secret.md", "not a prompt of this project")
    write(project / "sub" / "prompt.md", "not a prompt either")
    registry = ModuleRegistry([project])
    touched: list[str] = []
    real_stat, real_open = os.stat, builtins.open

    def watched_stat(path: Any, *args: Any, **kwargs: Any) -> Any:
        touched.append(str(path))
        return real_stat(path, *args, **kwargs)

    def watched_open(path: Any, *args: Any, **kwargs: Any) -> Any:
        touched.append(str(path))
        return real_open(path, *args, **kwargs)

    registry.all()  # folders found and listed before watching
    monkeypatch.setattr(os, "stat", watched_stat)
    monkeypatch.setattr(builtins, "open", watched_open)
    found, path = registry.resolve(name), registry.prompt_path(name)
    monkeypatch.undo()

    assert found is None and path is None
    assert touched == []
    with pytest.raises(PipelineError) as raised:
        registry.require(name, at="p.yml:3", step="out")
    assert "is not a module name" in raised.value.message
    assert raised.value.hint is not None and "create" not in raised.value.hint
    with pytest.raises(PipelineError):
        registry.instance(name)


def test_the_unknown_module_hint_offers_a_file_only_for_a_valid_name(project: Path) -> None:
    registry = Project.open(None).registry

    assert registry.unknown_hint("translater").startswith("did you mean 'translator'?")
    assert registry.unknown_hint("brand_new").endswith(str(Path("system_prompts") / "brand_new.md"))
    assert "create" not in registry.unknown_hint("../../etc/passwd")


def test_a_run_id_that_is_a_path_is_refused_before_anything_runs(project: Path) -> None:
    from helpers import run_library

    from orchestrai.errors import InputError

    write(project / "p.yml", "pipeline:\n  - {module: start_module, output_name: request}\n")
    with pytest.raises(InputError, match="cannot be part of a file name"):
        run_library("p.yml", inputs={"request": "x"}, log_dir=project / "logs", run_id="../../outside")
    assert not (project / "logs").exists() and not (project.parent / "outside").exists()
