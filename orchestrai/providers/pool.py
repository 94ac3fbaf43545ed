"""Creates each configured provider once per run, on first use, through its registered ProviderType."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..api import Provider
from ..config import DEFAULT_KEY_ENV, Config
from ..errors import OrchestraiError


class ProviderPool:
    """The providers of one run, by name. `force` sends every call to one provider (dry runs)."""

    def __init__(self, config: Config, *, force: str | None = None,
                 preset: Mapping[str, Provider] | None = None) -> None:
        self.config = config
        self.force = force
        self._providers: dict[str, Provider] = dict(preset or {})
        self._preset = frozenset(self._providers)

    def name_for(self, wanted: str) -> str:
        return self.force or wanted

    def check_key(self, name: str, *, step: str | None = None) -> None:
        """Raise the 'how to set your key' error now, before any money is spent."""
        name = self.name_for(name)
        if name in self._providers or not self.config.provider_type(name).requires_key:
            return
        if self.config.api_key(name) is None and not self._keyless_endpoint(name):
            raise self.config.missing_key_error(name, step=step)

    def prepare(self, settings: Mapping[str, Any], *, step: str | None = None) -> None:
        """Preflight for one step's model settings: its API key, then its provider type's own preflight
        (for a local model: the extra installed and the model loaded)."""
        name = self.name_for(str(settings["provider"]))
        self.check_key(name, step=step)
        preflight = self.config.provider_type(name).preflight
        if preflight is None or name in self._preset:
            return
        try:
            preflight(self.get(name, step=step), settings)
        except OrchestraiError as exc:
            exc.message = f"step {step!r}: {exc.message}" if step else exc.message
            raise

    def get(self, name: str, *, step: str | None = None) -> Provider:
        name = self.name_for(name)
        if name not in self._providers:
            self.check_key(name, step=step)
            self._providers[name] = self.config.provider_type(name).create(self.config.provider_settings(name))
        return self._providers[name]

    async def aclose(self) -> None:
        for provider in self._providers.values():
            await provider.aclose()
        self._providers.clear()

    def _keyless_endpoint(self, name: str) -> bool:
        # A self-hosted OpenAI-compatible server (Ollama, llama.cpp) usually needs no key at all.
        return name not in DEFAULT_KEY_ENV and self.config.provider(name).base_url is not None
