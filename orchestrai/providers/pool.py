"""Creates each configured provider once per run, on first use."""

from __future__ import annotations

from typing import Any

from ..config import DEFAULT_KEY_ENV, Config
from ..errors import OrchestraiError
from .base import Provider
from .echo import EchoProvider


class ProviderPool:
    """The providers of one run, by name. `force` sends every call to one provider (dry runs)."""

    def __init__(self, config: Config, *, force: str | None = None, preset: dict[str, Provider] | None = None) -> None:
        self.config = config
        self.force = force
        self._providers: dict[str, Provider] = dict(preset or {})
        self._preset = frozenset(self._providers)

    def name_for(self, wanted: str) -> str:
        return self.force or wanted

    def check_key(self, name: str, *, step: str | None = None) -> None:
        """Raise the 'how to set your key' error now, before any money is spent."""
        name = self.name_for(name)
        if self.config.provider(name).type in ("echo", "local") or name in self._providers:
            return
        if self.config.api_key(name) is None and not self._keyless_endpoint(name):
            raise self.config.missing_key_error(name, step=step)

    def prepare(self, settings: dict[str, Any], *, step: str | None = None) -> None:
        """Preflight for one step: its API key, or for a local model the extra and the loaded model.

        Local models load here, before the run starts: a wrong path fails before anything runs, and
        llama.cpp's loader (which briefly silences stdout/stderr) cannot swallow progress output.
        """
        name = self.name_for(str(settings["provider"]))
        if self.config.provider(name).type != "local" or name in self._preset:
            self.check_key(name, step=step)
            return
        from .local import check_installed

        check_installed()
        provider = self.get(name, step=step)
        try:
            provider.preload(settings)  # type: ignore[attr-defined]
        except OrchestraiError as exc:
            exc.message = f"step {step!r}: {exc.message}" if step else exc.message
            raise

    def get(self, name: str, *, step: str | None = None) -> Provider:
        name = self.name_for(name)
        if name not in self._providers:
            self._providers[name] = self._create(name, step)
        return self._providers[name]

    async def aclose(self) -> None:
        for provider in self._providers.values():
            await provider.aclose()
        self._providers.clear()

    def _keyless_endpoint(self, name: str) -> bool:
        # A self-hosted OpenAI-compatible server (Ollama, llama.cpp) usually needs no key at all.
        return name not in DEFAULT_KEY_ENV and self.config.provider(name).base_url is not None

    def _create(self, name: str, step: str | None) -> Provider:
        settings = self.config.provider(name)
        if settings.type == "echo":
            return EchoProvider(name, latency_s=settings.latency_s)
        if settings.type == "local":
            from .local import LocalProvider

            return LocalProvider(name, base_dir=self.config.base_dir)
        self.check_key(name, step=step)
        key = self.config.api_key(name) or "no-key-needed"
        common = {"api_key": key, "base_url": settings.base_url, "timeout_s": settings.timeout_s,
                  "key_env": DEFAULT_KEY_ENV.get(name)}
        if settings.type == "anthropic":
            from .anthropic_api import AnthropicProvider

            return AnthropicProvider(name, **common)
        from .openai_api import OpenAIProvider

        return OpenAIProvider(name, **common)
