"""Provider settings as people write them: rate limits under a provider, and errors that say when a
provider was inferred from the model's name rather than chosen."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from conftest import write
from fake_llm_server import FakeLLMServer
from helpers import run_library

from orchestrai.config import load_config
from orchestrai.errors import ValidationFailed

TIMEOUT_S = 60


def cli(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "orchestrai", *args], cwd=project, env=dict(os.environ),
                          capture_output=True, text=True, encoding="utf-8", timeout=TIMEOUT_S, stdin=subprocess.DEVNULL)


def test_rate_limits_under_a_provider_are_accepted_and_mean_the_same(project: Path) -> None:
    write(project / "config.yml", """
        providers:
          openai:
            rate_limits: {max_concurrent: 2, models: {gpt-4o: {requests_per_minute: 10}}}
        rate_limits:
          anthropic: {requests_per_minute: 5}
        """)
    config = load_config("config.yml")

    assert config.rate_limits["openai"].max_concurrent == 2
    assert config.rate_limits["openai"].for_model("gpt-4o").requests_per_minute == 10  # type: ignore[union-attr]
    assert config.rate_limits["anthropic"].requests_per_minute == 5


def test_rate_limits_under_a_provider_are_enforced(project: Path, server_config: Path, keys: dict[str, str],
                                                   fake_server: FakeLLMServer) -> None:
    text = server_config.read_text().replace("            timeout_s: 5\n", "            timeout_s: 5\n", 1)
    text = text.replace("    timeout_s: 5\n", "    timeout_s: 5\n    rate_limits: {max_concurrent: 1}\n", 1)
    write(project / "config.yml", text)
    steps = "\n".join(f"  - {{module: translator, inputs: [request], output_name: t{i}}}" for i in range(4))
    write(project / "wide.yml", "pipeline:\n  - {module: start_module, output_name: request}\n" + steps + "\n")
    fake_server.latency_s = 0.05

    result, _ = run_library("wide.yml", inputs={"request": "R"})

    assert result.status == "completed"
    assert fake_server.max_in_flight == 1  # four independent steps, one call at a time


def test_rate_limits_for_one_provider_in_both_places_is_an_error(project: Path) -> None:
    write(project / "config.yml", """
        providers:
          openai:
            rate_limits: {max_concurrent: 2}
        rate_limits:
          openai: {max_concurrent: 3}
        """)
    try:
        load_config("config.yml")
    except ValidationFailed as exc:
        message = str(exc)
    else:
        raise AssertionError("two places for one provider's rate limits were accepted")
    assert "config.yml:3: provider 'openai' has rate limits here and under rate_limits: (line 5)" in message
    assert "keep one of the two" in message


def test_an_inferred_provider_says_so_in_its_error(project: Path, fake_server: FakeLLMServer) -> None:
    # An OpenAI-compatible server is configured, but `model: tiny.gguf` infers the local provider.
    write(project / "config.yml", f"""
        providers:
          openai: {{base_url: "{fake_server.base_url}", api_key: not-needed-here}}
        """)
    write(project / "p.yml", """
        pipeline:
          - {module: start_module, output_name: request}
          - {module: translator, inputs: [request], output_name: answer, model_config: {model: tiny.gguf}}
        """)
    validated = cli(project, "validate", "--verbose", "p.yml")
    ran = cli(project, "run", "p.yml", "-i", "request=hi")

    assert validated.returncode == 0, validated.stderr
    assert ("answer: translator (prompt) -> local/tiny.gguf (provider inferred from model 'tiny.gguf')"
            in validated.stdout)
    assert ran.returncode == 2 and "Traceback" not in ran.stderr
    assert (f"(provider 'local' was inferred from model 'tiny.gguf'; set model_config.provider: openai to use the "
            f"server at {fake_server.base_url})") in ran.stderr.replace("\n", " ").replace("  ", " ")
    assert fake_server.requests == []  # nothing was sent anywhere


def test_an_inferred_provider_says_so_when_a_call_fails(project: Path, server_config: Path, keys: dict[str, str],
                                                        fake_server: FakeLLMServer) -> None:
    write(project / "p.yml", """
        pipeline:
          - {module: start_module, output_name: request}
          - {module: translator, inputs: [request], output_name: answer, model_config: {model: gpt-nope}}
        """)
    fake_server.queue_reply("no such model", status=404)

    result, _ = run_library("p.yml", inputs={"request": "hi"})

    error = result.records[1].error or ""
    assert result.status == "failed"
    assert "provider 'openai' was inferred from model 'gpt-nope'; set model_config.provider" in error
