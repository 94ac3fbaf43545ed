"""The one Redactor of a run: built by the engine, so no caller has to remember to pass one."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from ..config import Config
from ..redact import Redactor


def run_redactor(config: Config, preset: Mapping[str, Any]) -> Redactor:
    """Every key the run can see: the config's (file and environment, e.g. OPENAI_API_KEY) and ready-made providers'."""
    return Redactor([*config.secrets(), *provider_keys(preset.values())])


def provider_keys(providers: Iterable[Any]) -> list[str]:
    """The API keys held by provider objects a caller built itself (RunOptions.providers).

    Such a provider's key need not be in the config at all. The SDK clients (openai, anthropic)
    keep theirs as `api_key`, on the provider or on its client.
    """
    keys = []
    for provider in providers:
        for holder in (provider, getattr(provider, "_client", None)):
            key = getattr(holder, "api_key", None)
            if isinstance(key, str):
                keys.append(key)
    return keys
