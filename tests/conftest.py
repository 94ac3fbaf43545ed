"""Shared fixtures: a project folder, config files and the loopback fake LLM server."""

from __future__ import annotations

import shutil
import textwrap
from pathlib import Path

import pytest
from fake_llm_server import FakeLLMServer

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def _no_real_keys(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No test may use a real key or the developer's own config."""
    for name in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "OPENAI_BASE_URL", "ANTHROPIC_BASE_URL",
                 "OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_HEADERS",
                 "OTEL_EXPORTER_OTLP_TRACES_HEADERS", "OTEL_SERVICE_NAME"):  # nor the developer's collector
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg-config"))
    # These tests script openai when nothing is configured; tests/test_local_provider.py turns the
    # no-key local default back on.
    monkeypatch.setenv("ORCHESTRAI_LOCAL_DEFAULT", "0")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))  # each test its own call cache


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A project folder with the repo's prompts and pipelines, as the current directory."""
    root = tmp_path / "project"
    shutil.copytree(REPO / "system_prompts", root / "system_prompts")
    shutil.copytree(REPO / "pipelines", root / "pipelines")
    monkeypatch.chdir(root)
    return root


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


def install_distribution(site: Path, name: str, entry_points: str, module: str | None = None) -> Path:
    """A distribution as pip leaves it on sys.path: NAME-1.0.dist-info (METADATA, entry_points.txt) and its code."""
    dist = site / f"{name}-1.0.dist-info"
    write(dist / "METADATA", f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
    write(dist / "entry_points.txt", entry_points)
    if module is not None:
        write(site / f"{name}.py", module)
    return site


@pytest.fixture
def fake_server():
    with FakeLLMServer() as server:
        yield server


@pytest.fixture
def server_config(project: Path, fake_server: FakeLLMServer) -> Path:
    """config.yml pointing openai and anthropic at the fake server, keys from the environment."""
    return write(project / "config.yml", f"""
        providers:
          openai:
            base_url: {fake_server.base_url}
            api_key: ${{TEST_OPENAI_KEY}}
            timeout_s: 5
          anthropic:
            base_url: {fake_server.root_url}
            api_key: ${{TEST_ANTHROPIC_KEY}}
            timeout_s: 5
        default_model_config:
          model: gpt-4o-mini
          temperature: 0.2
        retry: {{max_attempts: 3, base_delay_s: 0.01, max_delay_s: 0.05}}
        log_dir: logs
        """)


@pytest.fixture
def keys(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    values = {"TEST_OPENAI_KEY": "sk-test-openai-0123456789abcdef",
              "TEST_ANTHROPIC_KEY": "sk-ant-test-0123456789abcdef"}
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    return values
