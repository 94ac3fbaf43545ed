"""Providers as plugins: a third-party package registers a provider type under the
`orchestrai.providers` entry points and a pipeline runs on it, exactly as on the built-ins."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import install_distribution, write

from orchestrai.api import PROVIDER_ENTRY_POINT_GROUP
from orchestrai.providers import registry

TIMEOUT_S = 60

# The whole third-party package: one file, plus one entry point in its distribution's metadata.
SHOUT_PROVIDER = '''
    import time

    from orchestrai.api import Completion, Message, ProviderSettings, ProviderType, Usage


    class ShoutProvider:
        def __init__(self, settings: ProviderSettings) -> None:
            self.name = settings.name
            self.suffix = str(settings.options.get("suffix", "!"))

        async def complete(self, messages: list[Message], settings: dict, *, on_token=None) -> Completion:
            text = messages[-1].content.upper() + self.suffix
            return Completion(text, Usage(1, 1), str(settings["model"]), self.name, 0.0)

        async def aclose(self) -> None:
            return None


    PROVIDER_TYPE = ProviderType(create=ShoutProvider, free=True, requires_key=False, default_model="loud-1")
    '''


def cli(project: Path, *args: str, site: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    if site is not None:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(site), env.get("PYTHONPATH", "")]))
    return subprocess.run([sys.executable, "-m", "orchestrai", *args], cwd=project, env=env, capture_output=True,
                          text=True, encoding="utf-8", timeout=TIMEOUT_S, stdin=subprocess.DEVNULL)


@pytest.fixture
def shout_site(tmp_path: Path) -> Path:
    return install_distribution(tmp_path / "site", "shoutprovider",
                                f"[{PROVIDER_ENTRY_POINT_GROUP}]\nshout = shoutprovider:PROVIDER_TYPE\n",
                                SHOUT_PROVIDER)


@pytest.fixture
def shout_project(project: Path) -> Path:
    write(project / "config.yml", """
        providers:
          loud:
            type: shout
            options: {suffix: "!!"}
        """)
    write(project / "system_prompts" / "echoer.md", "Repeat the request.\n")
    write(project / "shout.yml", """
        pipeline:
          - {module: start_module, output_name: request}
          - {module: echoer, inputs: [request], output_name: answer, model_config: {provider: loud}}
        """)
    return project


def test_builtins_register_through_the_entry_points_like_any_plugin() -> None:
    found = registry.registered()
    assert {"openai", "anthropic", "echo", "local"} <= set(found)
    assert all(found[name].distribution == "orchestrai" for name in ("openai", "anthropic", "echo", "local"))
    assert registry.provider_type("echo").free and registry.provider_type("openai").requires_key


def test_a_third_party_provider_runs_a_pipeline(shout_project: Path, shout_site: Path) -> None:
    validated = cli(shout_project, "validate", "-v", "shout.yml", site=shout_site)
    ran = cli(shout_project, "run", "shout.yml", "-i", "request=hello there", site=shout_site)

    assert validated.returncode == 0, validated.stderr
    assert "answer: echoer (prompt) -> loud/loud-1" in validated.stdout  # its default model, from its ProviderType
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.strip().endswith("HELLO THERE!!")  # the user message, shouted, with the configured option


def test_a_provider_type_that_is_not_installed_is_a_config_error_at_its_line(shout_project: Path) -> None:
    proc = cli(shout_project, "validate", "shout.yml")  # no shoutprovider on the path

    assert proc.returncode == 2
    assert "config.yml:3: provider 'loud': unknown type 'shout'" in proc.stderr
    assert "installed types: anthropic, echo, local, openai" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_a_broken_provider_plugin_is_named_not_a_traceback(shout_project: Path, tmp_path: Path) -> None:
    site = install_distribution(tmp_path / "broken", "shoutprovider",
                                f"[{PROVIDER_ENTRY_POINT_GROUP}]\nshout = shoutprovider:PROVIDER_TYPE\n",
                                "raise ImportError('needs libshout')\n")
    proc = cli(shout_project, "run", "shout.yml", "-i", "request=hi", site=site)

    assert proc.returncode == 2, proc.stderr
    assert "provider type 'shout' (shoutprovider:PROVIDER_TYPE, from shoutprovider) failed to load" in proc.stderr
    assert "needs libshout" in proc.stderr and "Traceback" not in proc.stderr


def test_a_plugin_cannot_take_over_a_builtin_type(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    site = install_distribution(tmp_path / "site", "hijack",
                                f"[{PROVIDER_ENTRY_POINT_GROUP}]\nopenai = hijack:PROVIDER_TYPE\n",
                                "PROVIDER_TYPE = 1\n")
    monkeypatch.syspath_prepend(str(site))
    registry.registered.cache_clear()
    try:
        assert registry.registered()["openai"].value == "orchestrai.providers.openai_api:PROVIDER_TYPE"
    finally:
        registry.registered.cache_clear()
