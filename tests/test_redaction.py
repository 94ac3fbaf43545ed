"""Redaction needs no caller's help: a run through the library alone, with a bare MemoryLog or WandbHook,
writes no key it can see (config file, environment, or a ready-made provider's own)."""

from __future__ import annotations

import asyncio
import sys
import types
from pathlib import Path
from typing import Any

import pytest
from conftest import write

from orchestrai import MemoryLog, Project, RunOptions, run_pipeline
from orchestrai.api import Completion, Event, Message, RunFinished, StepEnded, Usage
from orchestrai.errors import ProviderError

CONFIG_KEY = "sk-ant-from-config-0123456789"  # providers.anthropic.api_key: ${TEST_ANTHROPIC_KEY}
ENV_KEY = "sk-openai-from-environment-0123456789"  # only in OPENAI_API_KEY
PRESET_KEY = "sk-preset-provider-own-key-0123456789"  # only inside the provider object the caller made
KEYS = (CONFIG_KEY, ENV_KEY, PRESET_KEY)


class LeakyProvider:
    """A provider that echoes its key: first in an error (as some servers do), then in its answer."""

    def __init__(self) -> None:
        self.name = "openai"
        self.api_key = PRESET_KEY
        self.calls = 0

    async def complete(self, messages: list[Message], settings: dict[str, Any], *, on_token: Any = None) -> Completion:
        self.calls += 1
        if self.calls == 1:
            raise ProviderError(f"provider 'openai' rejected key {self.api_key} (429)", kind="rate_limit",
                                retry_after_s=0.0)
        return Completion(f"you said {messages[-1].content} with key {self.api_key}", Usage(10, 5),
                          str(settings["model"]), self.name, 0.0)

    async def aclose(self) -> None:
        return None


class JournalSpy:
    """Keeps the journal's text after every step (the memory log removes the journal when the run ends)."""

    events = frozenset({StepEnded, RunFinished})

    def __init__(self, memory_log: MemoryLog) -> None:
        self.memory_log = memory_log
        self.texts: list[str] = []

    def on_event(self, event: Event) -> None:
        path = self.memory_log.journal_path
        if isinstance(event, StepEnded) and path is not None and path.exists():
            self.texts.append(path.read_text(encoding="utf-8"))


@pytest.fixture
def leaky_project(project: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("OPENAI_API_KEY", ENV_KEY)
    monkeypatch.setenv("TEST_ANTHROPIC_KEY", CONFIG_KEY)
    write(project / "config.yml", """
        providers:
          anthropic: {api_key: "${TEST_ANTHROPIC_KEY}"}
        default_model_config: {model: gpt-4o-mini}
        retry: {max_attempts: 3, base_delay_s: 0.01, max_delay_s: 0.02}
        log_dir: logs
        cache: false
        """)
    write(project / "leak.yml", """
        name: leak
        pipeline:
          - {module: start_module, output_name: request}
          - {module: translator, inputs: [request], output_name: spanish, supplement: Spanish}
        """)
    return project


def run_leaky(project: Path, hooks: list[Any]) -> Any:
    """The library alone: Project, run_pipeline, and hooks built without any redactor."""
    opened = Project.open(None)
    graph = opened.load("leak.yml")
    options = RunOptions(run_inputs={"request": f"my keys: {CONFIG_KEY} {ENV_KEY} {PRESET_KEY}"},
                         providers={"openai": LeakyProvider()})
    return asyncio.run(run_pipeline(graph, opened.config, opened.registry, options, hooks))


def test_a_bare_memory_log_writes_no_key(leaky_project: Path) -> None:
    memory_log = MemoryLog(leaky_project / "logs")  # no redactor given
    spy = JournalSpy(memory_log)

    result = run_leaky(leaky_project, [memory_log, spy])

    assert result.status == "completed", [r.error for r in result.records]
    spanish = result.outputs["spanish"]
    assert all(key in spanish for key in (ENV_KEY, PRESET_KEY))  # the keys did reach something the log stores
    files = sorted(path for path in (leaky_project / "logs").rglob("*") if path.is_file())
    written = [path.read_text(encoding="utf-8") for path in files]
    assert written and spy.texts  # the final log, and the journal as it was while the run went
    for text in [*written, *spy.texts]:
        for key in KEYS:
            assert key not in text
    assert "rejected key ***" in written[0] and "my keys: *** *** ***" in written[0]


def test_a_callers_redactor_is_applied_besides_the_runs(leaky_project: Path) -> None:
    memory_log = MemoryLog(leaky_project / "logs", redact=lambda text: text.replace("Spanish", "[language]"))

    run_leaky(leaky_project, [memory_log])

    assert memory_log.path is not None
    text = memory_log.path.read_text(encoding="utf-8")
    assert "Spanish" not in text and "[language]" in text
    assert not any(key in text for key in KEYS)


def fake_wandb(logged: list[Any]) -> dict[str, types.ModuleType]:
    """Just enough of wandb's API for WandbHook; everything it is handed lands in `logged`."""

    class Span:
        def __init__(self, **fields: Any) -> None:
            self.fields, self.children = fields, []

        def add_child_span(self, span: Any) -> None:
            self.children.append(span)

        def __repr__(self) -> str:
            return f"Span({self.fields!r}, {self.children!r})"

    class Run:
        def __init__(self) -> None:
            self.summary = types.SimpleNamespace(update=logged.append)

        def log(self, data: Any) -> None:
            logged.append(data)

        def finish(self, exit_code: int = 0) -> None:
            return None

    def init(**kwargs: Any) -> Run:
        logged.append(kwargs)
        return Run()

    class Table:
        def __init__(self, columns: list[str], data: list[Any]) -> None:
            self.data = data

        def __repr__(self) -> str:
            return f"Table({self.data!r})"

    wandb = types.ModuleType("wandb")
    wandb.init, wandb.Table, wandb.Settings = init, Table, lambda **kw: kw  # type: ignore[attr-defined]
    trace_tree = types.ModuleType("wandb.sdk.data_types.trace_tree")
    trace_tree.Span, trace_tree.WBTraceTree = Span, lambda root: root  # type: ignore[attr-defined]
    trace_tree.Result = lambda **kw: kw  # type: ignore[attr-defined]
    trace_tree.SpanKind = types.SimpleNamespace(CHAIN="chain", LLM="llm", TOOL="tool")  # type: ignore[attr-defined]
    trace_tree.StatusCode = types.SimpleNamespace(SUCCESS="ok", ERROR="error")  # type: ignore[attr-defined]
    return {"wandb": wandb, "wandb.sdk": types.ModuleType("wandb.sdk"),
            "wandb.sdk.data_types": types.ModuleType("wandb.sdk.data_types"),
            "wandb.sdk.data_types.trace_tree": trace_tree}


def test_a_bare_wandb_hook_sends_no_key(leaky_project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    logged: list[Any] = []
    for name, module in fake_wandb(logged).items():
        monkeypatch.setitem(sys.modules, name, module)
    from orchestrai.observe.wandb_hook import WandbHook

    result = run_leaky(leaky_project, [WandbHook("project")])  # no redactor given

    assert result.status == "completed"
    sent = repr(logged)
    assert "with key ***" in sent  # the step's output was sent, redacted
    assert not any(key in sent for key in KEYS)
