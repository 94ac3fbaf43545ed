"""CLI start-up: what `orchestrai validate` and `--help` import, the quick `validate` path against typer's,
and the cheap look for plugins (ours and pydantic's) against importlib.metadata."""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import sys
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path

import pytest
from conftest import REPO, install_distribution, write

from orchestrai.api import PROVIDER_ENTRY_POINT_GROUP
from orchestrai.cli import app as cli_app
from orchestrai.cli.app import quick_validate, quick_validate_request
from orchestrai.config import ConfigFile, load_config
from orchestrai.modules.base import ENTRY_POINT_GROUP, ModuleRegistry, _entry_points
from orchestrai.plugins import Plugin, declared_entry_point_groups
from orchestrai.plugins import entry_points as plugin_entry_points

TIMEOUT_S = 120


def imported_packages(importtime_stderr: str) -> set[str]:
    return {line.rsplit("|", 1)[1].strip().split(".")[0] for line in importtime_stderr.splitlines()
            if line.startswith("import time:") and "|" in line and "imported package" not in line}


def cli(args: list[str], cwd: Path, *, python_flags: tuple[str, ...] = (), typer_only: bool = False,
        env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """`orchestrai ARGS` as the console script runs it, or (typer_only) straight through the typer app."""
    entry = ["-c", "from orchestrai.cli.commands import app; app(prog_name='orchestrai')"] if typer_only \
        else ["-m", "orchestrai"]
    return subprocess.run([sys.executable, *python_flags, *entry, *args], cwd=cwd, env=env or dict(os.environ),
                          text=True, encoding="utf-8", capture_output=True, stdin=subprocess.DEVNULL,
                          timeout=TIMEOUT_S)


# ---------------------------------------------------------------- what the cheap commands import


@pytest.mark.parametrize("args, banned, needed", [
    (["--help"], {"openai", "anthropic", "wandb", "networkx", "httpx", "llama_cpp", "pydantic", "jinja2", "yaml",
                  "rich"}, {"typer"}),
    # jinja2 checks the prompts' templates, pydantic the config and steps, yaml reads the file
    (["validate", "pipelines/planning.yml"], {"openai", "anthropic", "wandb", "networkx", "httpx", "llama_cpp",
                                              "typer", "rich"}, {"pydantic", "jinja2", "yaml"}),
])
def test_cheap_commands_import_only_what_they_use(project: Path, args: list[str], banned: set[str],
                                                  needed: set[str]) -> None:
    proc = cli(args, project, python_flags=("-X", "importtime"))

    assert proc.returncode == 0, proc.stderr
    packages = imported_packages(proc.stderr)
    assert {"orchestrai", *needed} <= packages, "importtime output was parsed"
    assert packages & banned == set()


SCAN_PROBE = """
import importlib.metadata as metadata, sys
calls = []
def counted(function):
    def wrapper(*args, **kwargs):
        calls.append(function.__name__)
        return function(*args, **kwargs)
    return wrapper
metadata.distributions, metadata.entry_points = counted(metadata.distributions), counted(metadata.entry_points)
sys.argv = ["orchestrai", "validate", "pipelines/planning.yml"]
from orchestrai.cli.app import main
try:
    main()
except SystemExit as exc:
    print("EXIT", exc.code, "SCANS", calls)
"""


def test_validate_scans_no_distribution_metadata_when_no_plugin_is_installed(project: Path) -> None:
    declared = [group for group in (ENTRY_POINT_GROUP, "pydantic") if entry_points(group=group)]
    proc = subprocess.run([sys.executable, "-c", SCAN_PROBE], cwd=project, text=True, capture_output=True,
                          timeout=TIMEOUT_S)

    assert proc.returncode == 0, proc.stderr
    # importlib.metadata is imported (by pydantic) but reads no distribution: ~20-30 ms with ~170 installed
    expected = [] if not declared else proc.stdout.split("SCANS", 1)[1].strip()
    assert proc.stdout.strip().endswith(f"EXIT 0 SCANS {expected}"), proc.stdout


# ---------------------------------------------------------------- the quick validate path is typer's, faster


@pytest.fixture
def validate_project(project: Path) -> Path:
    write(project / "bad.yml", """
        pipeline:
          - module: start_module
            output_name: request
          - module: task_planer
            inputs: [request, plam]
            output_name: plan
          - module: enhancer
            inputs: [request]
            output_name: hot
            model_config: {temperature: hot}
        """)
    write(project / "system_prompts" / "broken.md", "line one\nHello {{ request \n")
    write(project / "broken.yml", """
        pipeline:
          - {module: start_module, output_name: request}
          - {module: broken, inputs: [request], output_name: out}
        """)
    write(project / "good_config.yml", "max_concurrency: 2\n")
    write(project / "bad_config.yml", """
        providers:
          openai:
            base_urll: http://x
        max_concurrency: zero
        """)
    return project


QUICK_CASES = [
    ["validate", "pipelines/planning.yml"],
    ["validate", "pipelines/planning.yml", "pipelines/translation.yml"],
    ["validate", "pipelines/planning.yml", "bad.yml", "broken.yml"],
    ["validate", "missing.yml"],
    ["validate", "pipelines/planning.yml", "--config", "bad_config.yml"],
    ["validate", "--config=nope.yml", "pipelines/planning.yml"],
    ["validate", "-c", "good_config.yml", "pipelines/translation.yml", "broken.yml"],
]


@pytest.mark.parametrize("args", QUICK_CASES, ids=[" ".join(case[1:]) for case in QUICK_CASES])
def test_quick_validate_prints_and_exits_as_typer_does(validate_project: Path, args: list[str]) -> None:
    assert quick_validate_request(args) is not None, "this form takes the quick path"

    quick = cli(args, validate_project)
    through_typer = cli(args, validate_project, typer_only=True)

    assert (quick.returncode, quick.stdout, quick.stderr) == \
        (through_typer.returncode, through_typer.stdout, through_typer.stderr)
    assert "Traceback" not in quick.stderr


def test_quick_validate_reports_problems_with_file_line_and_hint(validate_project: Path) -> None:
    proc = cli(["validate", "pipelines/planning.yml", "bad.yml", "broken.yml"], validate_project)

    assert proc.returncode == 2
    assert proc.stdout == "pipelines/planning.yml: valid — 5 steps, 6 edges, widest parallel layer 1, longest chain 5\n"
    assert "bad.yml:4: step 'plan': unknown module 'task_planer'" in proc.stderr
    assert "hint: did you mean 'task_planner'?" in proc.stderr
    assert "bad.yml:5: step 'plan' needs 'plam', which no step produces" in proc.stderr
    assert "bad.yml:10: pipeline.2.model_config.temperature: input should be a valid number" in proc.stderr
    assert "broken.md:2: prompt template syntax error" in proc.stderr


@pytest.mark.parametrize("args, exit_code, words", [
    (["validate"], 2, ["Missing argument"]),
    (["validate", "--help"], 0, ["Usage:", "--config"]),
    (["validate", "-cgood_config.yml", "pipelines/planning.yml"], 0, ["pipelines/planning.yml: valid"]),
    (["validate", "--", "pipelines/planning.yml"], 0, ["pipelines/planning.yml: valid"]),
    (["validate", "pipelines/planning.yml", "--bogus"], 2, ["No such option"]),
])
def test_other_forms_go_to_typer(validate_project: Path, args: list[str], exit_code: int, words: list[str]) -> None:
    assert quick_validate_request(args) is None

    proc = cli(args, validate_project)

    assert proc.returncode == exit_code, proc.stderr
    assert all(word in proc.stdout + proc.stderr for word in words), proc.stdout + proc.stderr


@pytest.mark.parametrize("args, expected", [
    (["validate", "a.yml"], ([Path("a.yml")], None)),
    (["validate", "a.yml", "b.yml", "-c", "c.yml"], ([Path("a.yml"), Path("b.yml")], Path("c.yml"))),
    (["validate", "--config", "c.yml", "a.yml"], ([Path("a.yml")], Path("c.yml"))),
    (["validate", "--config=c.yml", "a.yml"], ([Path("a.yml")], Path("c.yml"))),
    (["validate"], None),
    (["validate", "--config", "c.yml"], None),  # no pipeline: typer says what is missing
    (["validate", "a.yml", "--config"], None),  # no value
    (["validate", "a.yml", "--config="], None),
    (["validate", "a.yml", "-c", "c.yml", "-c", "d.yml"], None),  # repeated
    (["validate", "a.yml", "--config", "-x"], None),
    (["validate", "a.yml", "-cc.yml"], None),
    (["validate", "a.yml", "--help"], None),
    (["validate", "a.yml", "-"], None),
    (["validate", "--", "a.yml"], None),
    (["validate", ""], None),
    (["validate", "a\udcff.yml"], None),  # undecodable bytes in the name
    (["run", "a.yml"], None),
    (["--help"], None),
    ([], None),
])
def test_quick_validate_request_takes_only_plain_forms(args: list[str], expected: object) -> None:
    assert quick_validate_request(args) == expected


def test_quick_validate_request_leaves_shell_completion_to_click(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("_ORCHESTRAI_COMPLETE", "bash_complete")
    assert quick_validate_request(["validate", "a.yml"]) is None


def test_quick_validate_exit_codes_on_interrupt_and_closed_pipe(validate_project: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    import orchestrai.cli.validatecmd as validatecmd

    def interrupted(*args: object) -> int:
        raise KeyboardInterrupt

    monkeypatch.setattr(validatecmd, "validate_pipelines", interrupted)
    assert quick_validate([Path("pipelines/planning.yml")], None) == 130  # as typer: 130, nothing printed
    monkeypatch.undo()

    class ClosedPipe:
        encoding = "utf-8"

        def write(self, text: str) -> int:
            raise BrokenPipeError(errno.EPIPE, "Broken pipe")

        def flush(self) -> None:
            raise BrokenPipeError(errno.EPIPE, "Broken pipe")

    monkeypatch.setattr(sys, "stdout", ClosedPipe())
    monkeypatch.setattr(sys, "stderr", sys.stderr)  # restored after the test: quick_validate replaces both
    assert quick_validate([Path("pipelines/planning.yml")], None) == 1
    sys.stdout.flush()  # the closed pipe is now quiet, as click leaves it


def test_closed_stdout_exits_1_quietly_as_typer_does(validate_project: Path) -> None:
    def with_closed_stdout(typer_only: bool) -> tuple[int, str]:
        read_end, write_end = os.pipe()
        os.close(read_end)  # the reader is gone: writing raises BrokenPipeError
        entry = ["-c", "from orchestrai.cli.commands import app; app(prog_name='orchestrai')"] if typer_only \
            else ["-m", "orchestrai"]
        try:
            proc = subprocess.run([sys.executable, *entry, "validate", "pipelines/planning.yml"], cwd=validate_project,
                                  stdout=write_end, stderr=subprocess.PIPE, text=True, timeout=TIMEOUT_S)
        finally:
            os.close(write_end)
        return proc.returncode, proc.stderr

    assert with_closed_stdout(typer_only=False) == with_closed_stdout(typer_only=True) == (1, "")


def test_echo_leaves_ansi_codes_and_odd_encodings_to_typer(monkeypatch: pytest.MonkeyPatch,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    cli_app.echo("plain — text")
    assert capsys.readouterr().out == "plain — text\n"
    cli_app.echo("\033[31mred\033[0m.yml")  # not a terminal: typer strips the colour codes
    assert capsys.readouterr().out == "red.yml\n"


def test_typer_objects_still_importable_from_app() -> None:
    from orchestrai.cli.app import app, cache_app, logs_app
    from orchestrai.cli.commands import app as commands_app

    assert app is commands_app and logs_app is not None and cache_app is not None
    with pytest.raises(AttributeError):
        cli_app.no_such_thing  # noqa: B018


# ---------------------------------------------------------------- config without a file


def test_defaults_without_a_config_file_equal_a_validated_empty_config(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    config = load_config(None)

    assert config.path is None
    assert config.file == ConfigFile() and config.file.model_dump() == ConfigFile().model_dump()
    assert config.file.model_fields_set == set()
    assert config.redacted() == ConfigFile().model_dump(mode="json", exclude_none=True)


# ---------------------------------------------------------------- plugins: the cheap look against importlib.metadata


PLUGIN_SOURCE = """
    async def run(ctx, inputs):
        return inputs["request"].upper()
    """


def as_pairs(found: list[Plugin] | list[EntryPoint]) -> list[tuple[str, str]]:
    return sorted((entry.name, entry.value) for entry in found)


def test_no_plugin_installed_gives_what_importlib_metadata_gives() -> None:
    assert as_pairs(_entry_points()) == as_pairs(list(entry_points(group=ENTRY_POINT_GROUP)))
    assert as_pairs(plugin_entry_points(PROVIDER_ENTRY_POINT_GROUP)) == \
        as_pairs(list(entry_points(group=PROVIDER_ENTRY_POINT_GROUP))) != []


def test_an_installed_plugin_is_found(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    site = install_distribution(tmp_path / "site", "shoutplugin",
                             f"[{ENTRY_POINT_GROUP}]\nshout_plugin = shoutplugin:run\n", PLUGIN_SOURCE)
    assert ENTRY_POINT_GROUP not in declared_entry_point_groups(ENTRY_POINT_GROUP)
    monkeypatch.syspath_prepend(str(site))

    assert declared_entry_point_groups(ENTRY_POINT_GROUP, "pydantic") == {ENTRY_POINT_GROUP}
    assert as_pairs(_entry_points()) == as_pairs(list(entry_points(group=ENTRY_POINT_GROUP))) != []
    info = ModuleRegistry([tmp_path]).resolve("shout_plugin")
    assert info is not None and info.kind == "plugin" and info.source == "shoutplugin:run"


def test_an_installed_plugin_is_found_by_the_cli(project: Path, tmp_path: Path) -> None:
    site = install_distribution(tmp_path / "site", "shoutplugin",
                             f"[{ENTRY_POINT_GROUP}]\nshout_plugin = shoutplugin:run\n", PLUGIN_SOURCE)
    write(project / "shout.yml", """
        pipeline:
          - {module: start_module, output_name: request}
          - {module: shout_plugin, inputs: [request], output_name: loud}
        """)
    pythonpath = os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env = {**os.environ, "PYTHONPATH": pythonpath}

    validated = cli(["validate", "shout.yml"], project, env=env)
    listed = cli(["modules"], project, env=env)
    without = cli(["validate", "shout.yml"], project)

    assert validated.returncode == 0, validated.stderr
    assert validated.stdout.startswith("shout.yml: valid — 2 steps")
    assert any(line.replace("│", " ").split()[:2] == ["shout_plugin", "plugin"]
               for line in listed.stdout.splitlines()), listed.stdout
    assert without.returncode == 2 and "unknown module 'shout_plugin'" in without.stderr


def test_the_cheap_look_is_conservative(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A group named anywhere in a distribution's entry points counts; so does a path it cannot read.
    mentioned = install_distribution(tmp_path / "a", "other", "[console_scripts]\nx = orchestrai.modules.x:main\n")
    monkeypatch.syspath_prepend(str(mentioned))
    assert ENTRY_POINT_GROUP in declared_entry_point_groups(ENTRY_POINT_GROUP)
    monkeypatch.undo()

    zipped = tmp_path / "plugins.zip"
    shutil.make_archive(str(zipped.with_suffix("")), "zip", mentioned)
    monkeypatch.syspath_prepend(str(zipped))
    assert declared_entry_point_groups(ENTRY_POINT_GROUP, "pydantic") == {ENTRY_POINT_GROUP, "pydantic"}
    monkeypatch.undo()

    class OtherFinder:
        @staticmethod
        def find_distributions(context: object = None) -> list[object]:
            return []

    monkeypatch.setattr(sys, "meta_path", [*sys.meta_path, OtherFinder])
    assert declared_entry_point_groups(ENTRY_POINT_GROUP) == {ENTRY_POINT_GROUP}


def test_pydantic_plugin_search_skipped_only_when_no_distribution_declares_one(tmp_path: Path,
                                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    from pydantic.plugin import _loader

    from orchestrai.cli.validatecmd import skip_pydantic_plugin_scan

    monkeypatch.setattr(_loader, "_plugins", None)
    skip_pydantic_plugin_scan()
    assert _loader._plugins == {} and list(_loader.get_plugins()) == []

    monkeypatch.setattr(_loader, "_plugins", None)
    site = install_distribution(tmp_path / "site", "watcher", "[pydantic]\nw = watcher:plugin\n")
    monkeypatch.syspath_prepend(str(site))
    skip_pydantic_plugin_scan()
    assert _loader._plugins is None  # pydantic looks for itself


def test_repo_pipelines_validate_in_a_fresh_process_from_any_folder(tmp_path: Path) -> None:
    proc = cli(["validate", str(REPO / "pipelines" / "planning.yml")], tmp_path)

    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.endswith("planning.yml: valid — 5 steps, 6 edges, widest parallel layer 1, longest chain 5\n")
