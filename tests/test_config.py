"""Config lookup, ${ENV} expansion, key fallback and redaction."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import REPO, write
from helpers import run_library

from orchestrai.config import load_config


def test_no_config_file_gives_defaults(project: Path) -> None:
    config = load_config(None)
    assert config.path is None and config.file.max_concurrency == 8
    assert config.log_dir == (project / "logs").resolve()


def test_lookup_order_explicit_then_cwd_then_user_dir(project: Path, tmp_path: Path) -> None:
    user = write(tmp_path / "xdg-config" / "orchestrai" / "config.yml", "max_concurrency: 3\n")
    assert load_config(None).path == user
    write(project / "config.yml", "max_concurrency: 4\n")
    assert load_config(None).file.max_concurrency == 4
    explicit = write(tmp_path / "other.yml", "max_concurrency: 5\n")
    assert load_config(explicit).file.max_concurrency == 5


def test_env_expansion_with_default(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MY_URL", "http://127.0.0.1:9999/v1")
    write(project / "config.yml", """
        providers:
          local: {type: openai, base_url: "${MY_URL}"}
        log_dir: ${LOGS:-run-logs}
        """)
    config = load_config(None)
    assert config.provider("local").base_url == "http://127.0.0.1:9999/v1"
    assert config.log_dir.name == "run-logs"


def test_key_falls_back_to_standard_env_only_for_builtin_providers(project: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-from-env-1234567890")
    write(project / "config.yml", "providers:\n  vllm: {type: openai, base_url: 'http://127.0.0.1:1/v1'}\n")
    config = load_config(None)
    assert config.api_key("openai") == "sk-from-env-1234567890"
    assert config.api_key("vllm") is None  # an OpenAI key is never sent to another server


def test_secrets_are_redacted_from_the_log(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    secret = "sk-super-secret-value-123456"
    monkeypatch.setenv("OPENAI_API_KEY", secret)
    write(project / "config.yml", "providers:\n  openai: {api_key: '${OPENAI_API_KEY}'}\n")
    _, memory_log = run_library("pipelines/translation.yml", inputs={"request": f"my key is {secret}"}, dry_run=True)
    text = memory_log.path.read_text()
    assert secret not in text
    log = json.loads(text)
    assert log["config"]["providers"]["openai"]["api_key"] == "***"


def test_example_config_is_valid(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-example-0000000000")
    config = load_config(REPO / "config.example.yml")
    assert "ollama" in config.provider_names() and config.file.retry.max_attempts == 3
