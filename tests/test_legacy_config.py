"""Coming from the original OrchestrAI: its config.yml is read as ours (one notice), and `config migrate` converts it.

The original's pipelines (a top-level `pipeline:` list of module / inputs / output_name steps) and its
system_prompts/*.txt already run unchanged; the end-to-end test here keeps that true with its config.
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any

import pytest
from conftest import write
from fake_llm_server import FakeLLMServer
from scripted import ScriptedProvider
from test_cli import assert_no_traceback, chat_requests, cli, only_log

from orchestrai.config import ConfigFile, load_config, parse_config
from orchestrai.engine.options import RunOptions
from orchestrai.engine.runner import run_pipeline
from orchestrai.errors import ValidationFailed
from orchestrai.legacy_config import is_legacy
from orchestrai.project import Project

LEGACY = """
    pipeline: 'engineering_pipeline'
    default_model: 'gpt-4-0613'
    default_temperature: 0.7
    default_max_tokens: Null
    default_top_p: 1
    default_frequency_penalty: 0
    default_presence_penalty: 0
    wandb_enabled: false
    tools_enabled: false
    working_codebase_dirname: 'code'
    working_image_dirname: 'images'
    """

# A pipeline as the original wrote them: no name, the same module twice, a supplement, a step's model_config.
ORIGINAL_PIPELINE = """
    pipeline:
      - module: start_module
        inputs: []
        output_name: request
      - module: storyteller
        inputs: [request]
        output_name: story
      - module: storyteller
        inputs: [request, story]
        output_name: sequel
        supplement: Make it a sequel to the story.
      - module: translator
        inputs: [sequel]
        output_name: translation
        supplement: French
        model_config:
          model: gpt-3.5-turbo
          temperature: 0.2
    """

STORYTELLER = "You are a storyteller. Tell a short story about the request.\n"
TRANSLATOR = "You are a translator. Translate the text into the language given.\n"
NOTICE_START = "config.yml is in the original OrchestrAI format"


@pytest.fixture
def legacy_project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A folder laid out as the original's: config.yml, pipelines/<name>.yml, system_prompts/*.txt."""
    root = tmp_path / "original"
    write(root / "config.yml", LEGACY)
    write(root / "pipelines" / "engineering_pipeline.yml", ORIGINAL_PIPELINE)
    write(root / "system_prompts" / "storyteller.txt", STORYTELLER)
    write(root / "system_prompts" / "translator.txt", TRANSLATOR)
    monkeypatch.chdir(root)
    return root


# ---------------------------------------------------------------- reading the original's config


def test_legacy_config_is_read_with_every_setting_mapped(legacy_project: Path) -> None:
    config = load_config(legacy_project / "config.yml")

    assert config.file.default_model_config.settings() == {
        "model": "gpt-4-0613", "temperature": 0.7, "top_p": 1, "frequency_penalty": 0, "presence_penalty": 0}
    assert config.file.wandb.enabled is False
    assert config.file.workspace_dir == "code"
    assert config.file.pipeline == "pipelines/engineering_pipeline.yml"
    graph = Project.open(legacy_project / "config.yml").load(None)
    assert Path(graph.pipeline.path).resolve() == (legacy_project / "pipelines" / "engineering_pipeline.yml").resolve()


def test_the_notice_names_the_mapping_and_each_ignored_key_once(legacy_project: Path) -> None:
    config = load_config(legacy_project / "config.yml")

    assert len(config.notices) == 1
    notice = config.notices[0]
    assert notice.startswith("config.yml is in the original OrchestrAI format; read as: ")
    for mapped in ("default_model -> default_model_config.model",
                   "default_temperature -> default_model_config.temperature", "default_max_tokens: null -> unset",
                   "default_top_p -> default_model_config.top_p",
                   "default_frequency_penalty -> default_model_config.frequency_penalty",
                   "default_presence_penalty -> default_model_config.presence_penalty",
                   "wandb_enabled -> wandb.enabled", "working_codebase_dirname -> workspace_dir",
                   "pipeline: engineering_pipeline -> pipelines/engineering_pipeline.yml"):
        assert mapped in notice
    assert "; ignored: tools_enabled, working_image_dirname." in notice
    assert notice.count("tools_enabled") == notice.count("working_image_dirname") == 1
    assert "orchestrai config migrate" in notice


def test_values_other_than_the_defaults_reach_our_keys(project: Path) -> None:
    path = write(project / "config.yml", """
        default_model: claude-haiku-4-5
        default_max_tokens: 512
        wandb_enabled: true
        pipeline: pipelines/planning.yml
        """)

    config = load_config(path)

    assert config.file.default_model_config.settings() == {"model": "claude-haiku-4-5", "max_tokens": 512}
    assert config.file.wandb.enabled is True
    assert config.file.pipeline == "pipelines/planning.yml"  # a path stays as it is
    assert "pipeline:" not in config.notices[0] and "ignored" not in config.notices[0]


@pytest.mark.parametrize("data, legacy", [
    ({"default_model": "gpt-4"}, True),
    ({"pipeline": "x", "wandb_enabled": False}, True),
    ({"working_codebase_dirname": "code", "some_new_key": 1}, True),  # unknown keys of the original: ignored
    ({"pipeline": "pipelines/planning.yml"}, False),  # the shared key alone: ours
    ({"default_model_config": {"model": "gpt-4"}}, False),
    ({"default_model": "gpt-4", "providers": {}}, False),  # a mixture is not guessed at
])
def test_the_legacy_shape_is_detected_only_from_legacy_keys(data: dict[str, Any], legacy: bool) -> None:
    assert is_legacy(data, ConfigFile.model_fields) is legacy


def test_our_format_gets_no_notice_and_a_bare_pipeline_name_stays_a_path(project: Path) -> None:
    path = write(project / "config.yml", "pipeline: planning\ndefault_model_config: {model: gpt-4o-mini}\n")

    config = load_config(path)

    assert config.notices == [] and config.file.pipeline == "planning"


def test_unknown_keys_of_a_legacy_file_are_reported_as_ignored_with_a_did_you_mean(project: Path) -> None:
    path = write(project / "config.yml", """
        default_model: gpt-4
        default_temprature: 0.5
        openai_api_key: sk-not-a-real-key-0123456789
        telemetry: off
        """)

    notice = load_config(path).notices[0]

    assert ("ignored: default_temprature (unknown; did you mean default_temperature?), "
            "openai_api_key (keys come from OPENAI_API_KEY), telemetry (unknown).") in notice
    assert "sk-not-a-real-key" not in notice


def test_a_mixture_of_both_formats_is_an_error_at_each_legacy_key(project: Path) -> None:
    path = write(project / "config.yml", """
        providers: {openai: {timeout_s: 5}}
        default_model: gpt-4
        tools_enabled: false
        max_concurrency: none
        """)

    config, problems = parse_config(path)

    assert config is None
    shown = [str(p) for p in problems]
    assert shown[0].startswith("config.yml:2: 'default_model' is a key of the original OrchestrAI format")
    assert "hint: write it as default_model_config.model" in shown[0]
    assert shown[1].startswith("config.yml:3: 'tools_enabled' is a key of the original") and "remove it" in shown[1]
    assert shown[2].startswith("config.yml:4: max_concurrency:")  # the rest is still checked
    assert len(problems) == 3


def test_wrong_types_in_a_legacy_file_point_at_the_legacy_keys_lines(project: Path) -> None:
    path = write(project / "config.yml", LEGACY.replace("0.7", "hot").replace("default_top_p: 1", "default_top_p: 3")
                 .replace("wandb_enabled: false", "wandb_enabled: maybe"))

    with pytest.raises(ValidationFailed) as failed:
        load_config(path)

    lines = [(p.line, p.message.split(":")[0]) for p in failed.value.problems]
    assert lines == [(3, "default_temperature"), (5, "default_top_p"), (8, "wandb_enabled")]
    assert "(got 'hot')" in failed.value.problems[0].message
    assert failed.value.problems[0].hint == "it is read as default_model_config.temperature"


def test_a_legacy_file_with_a_wrong_type_exits_2_naming_its_line(legacy_project: Path) -> None:
    write(legacy_project / "config.yml", LEGACY.replace("0.7", "hot"))

    proc = cli(legacy_project, "run", "--dry-run", "-i", "request=x")

    assert proc.returncode == 2
    assert_no_traceback(proc)
    assert proc.stderr.startswith("config.yml:3: default_temperature: input should be a valid number")
    assert NOTICE_START not in proc.stderr


# ---------------------------------------------------------------- the original's project, end to end


def test_the_originals_project_runs_unchanged_end_to_end(legacy_project: Path, fake_server: FakeLLMServer) -> None:
    fake_server.queue_reply("Once upon a time, a dragon.", match="Make it a sequel")
    fake_server.queue_reply("Il était une fois un dragon.", match="You are a translator")
    fake_server.default_reply = "A knight met a dragon."
    # The original has no providers: key; the openai SDK reads OPENAI_BASE_URL, as it did for the original.
    env = {**os.environ, "OPENAI_BASE_URL": fake_server.base_url, "OPENAI_API_KEY": "sk-test-legacy-0123456789"}

    proc = cli(legacy_project, "run", "-i", "request=a dragon", env=env)

    assert proc.returncode == 0, proc.stderr
    assert_no_traceback(proc)
    assert proc.stderr.count("original OrchestrAI format") == 1
    assert proc.stdout == "Il était une fois un dragon.\n"  # the last step's output
    requests = chat_requests(fake_server)
    assert len(requests) == 3
    story, sequel, translation = sorted(requests, key=lambda r: r.received_at)
    for request in (story, sequel):  # the legacy defaults, as the provider receives them
        assert {k: request.body.get(k) for k in ("model", "temperature", "top_p", "frequency_penalty",
                                                  "presence_penalty")} == {
            "model": "gpt-4-0613", "temperature": 0.7, "top_p": 1, "frequency_penalty": 0, "presence_penalty": 0}
        assert "max_tokens" not in request.body and "storyteller" in (request.system or "")
    assert "Make it a sequel to the story." in sequel.last_user_text
    assert "A knight met a dragon." in sequel.last_user_text  # the first story, as the sequel's input
    assert (translation.model, translation.body["temperature"], translation.body["top_p"]) == ("gpt-3.5-turbo", 0.2, 1)
    assert "French" in translation.last_user_text
    log = only_log(legacy_project)
    assert [n for n in log["notices"] if "original OrchestrAI" in n] == [log["notices"][0]]
    assert [step["id"] for step in log["steps"]] == ["request", "story", "sequel", "translation"]


def test_dry_run_and_validate_show_the_notice_once(legacy_project: Path) -> None:
    dry = cli(legacy_project, "run", "--dry-run", "-i", "request=a dragon")
    checked = cli(legacy_project, "validate", "pipelines/engineering_pipeline.yml")

    assert dry.returncode == 0, dry.stderr
    assert dry.stderr.count("original OrchestrAI format") == 1
    assert "would send to gpt-4-0613" in dry.stdout and "would send to gpt-3.5-turbo" in dry.stdout
    assert checked.returncode == 0, checked.stderr
    assert checked.stderr.count("original OrchestrAI format") == 1
    assert checked.stdout.startswith("pipelines/engineering_pipeline.yml: valid")


def test_library_run_gives_the_provider_the_mapped_settings_and_the_result_the_notice(legacy_project: Path) -> None:
    project = Project.open(legacy_project / "config.yml")
    graph = project.load(None)
    provider = ScriptedProvider("openai")

    result = asyncio.run(run_pipeline(graph, project.config, project.registry,
                                      RunOptions(run_inputs={"request": "a dragon"}, providers={"openai": provider})))

    assert result.status == "completed"
    assert result.notices == project.config.notices
    settings = [call.settings for call in provider.calls]
    assert sorted((s["model"], s["temperature"], s["top_p"]) for s in settings) == [
        ("gpt-3.5-turbo", 0.2, 1), ("gpt-4-0613", 0.7, 1), ("gpt-4-0613", 0.7, 1)]


# ---------------------------------------------------------------- orchestrai config migrate


def test_migrate_prints_an_equivalent_config_in_our_format(legacy_project: Path) -> None:
    legacy = load_config(legacy_project / "config.yml")

    proc = cli(legacy_project, "config", "migrate")

    assert proc.returncode == 0, proc.stderr
    assert "# Ignored (no counterpart in this format): tools_enabled, working_image_dirname\n" in proc.stdout
    converted = write(legacy_project / "converted.yml", proc.stdout)
    config = load_config(converted)
    assert config.notices == []
    assert config.file.model_dump() == legacy.file.model_dump()
    assert (legacy_project / "config.yml").read_text(encoding="utf-8").startswith("pipeline: 'engineering_pipeline'")


def test_migrate_keeps_env_references_unexpanded(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LEGACY_MODEL", "gpt-4")
    write(project / "config.yml", "default_model: ${LEGACY_MODEL}\n")

    proc = cli(project, "config", "migrate", "config.yml")

    assert proc.returncode == 0, proc.stderr
    assert "model: ${LEGACY_MODEL}" in proc.stdout


def test_migrate_write_replaces_the_file_and_never_overwrites_a_backup(legacy_project: Path) -> None:
    path = legacy_project / "config.yml"
    original = path.read_bytes()
    write(legacy_project / "config.yml.bak", "an older backup\n")

    proc = cli(legacy_project, "config", "migrate", "--write")

    assert proc.returncode == 0, proc.stderr
    assert (legacy_project / "config.yml.bak").read_text(encoding="utf-8") == "an older backup\n"
    assert (legacy_project / "config.yml.bak.1").read_bytes() == original
    assert "config.yml.bak.1" in proc.stderr
    assert load_config(path).notices == []
    assert not list(legacy_project.glob(".config.yml.*"))  # no temporary file left behind
    again = cli(legacy_project, "config", "migrate", "--write")
    assert again.returncode == 0 and "already in orchestrai's format" in again.stderr
    assert not (legacy_project / "config.yml.bak.2").exists()


def test_migrate_write_makes_config_yml_bak(legacy_project: Path) -> None:
    original = (legacy_project / "config.yml").read_bytes()

    proc = cli(legacy_project, "config", "migrate", "config.yml", "--write")

    assert proc.returncode == 0, proc.stderr
    assert (legacy_project / "config.yml.bak").read_bytes() == original
    assert json.dumps(load_config(legacy_project / "config.yml").file.default_model_config.settings()) == json.dumps(
        {"model": "gpt-4-0613", "temperature": 0.7, "top_p": 1, "frequency_penalty": 0, "presence_penalty": 0})


def test_migrate_on_our_format_changes_nothing(project: Path) -> None:
    path = write(project / "config.yml", "default_model_config: {model: gpt-4o-mini}\n")
    before = path.read_bytes()

    proc = cli(project, "config", "migrate", "--write")

    assert proc.returncode == 0, proc.stderr
    assert "config.yml is already in orchestrai's format; nothing to change" in proc.stderr
    assert proc.stdout == ""
    assert path.read_bytes() == before and not (project / "config.yml.bak").exists()


@pytest.mark.parametrize("args, needle", [
    (["missing.yml"], "error: config file missing.yml not found"),
    ([], "error: no config file found"),
])
def test_migrate_bad_path_exits_2(project: Path, args: list[str], needle: str) -> None:
    proc = cli(project, "config", "migrate", *args)

    assert proc.returncode == 2
    assert_no_traceback(proc)
    assert proc.stderr.startswith(needle)


def test_migrate_refuses_a_legacy_file_with_problems(legacy_project: Path) -> None:
    write(legacy_project / "config.yml", LEGACY.replace("0.7", "hot"))

    proc = cli(legacy_project, "config", "migrate", "--write")

    assert proc.returncode == 2
    assert proc.stderr.startswith("config.yml:3: default_temperature:")
    assert not (legacy_project / "config.yml.bak").exists()
