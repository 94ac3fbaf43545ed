"""Keep secrets out of everything we write or show."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any


class Redactor:
    """Replaces every known secret in a text with '***' before it is stored or shown."""

    def __init__(self, secrets: list[str]) -> None:
        # Short values would match ordinary text; real keys are long.
        self.secrets = sorted({s for s in secrets if len(s) >= 8}, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, "***")
        return text


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


def redact_data(value: Any, redact: Callable[[str], str]) -> Any:
    """`value` (JSON-like: dicts, lists, strings, numbers) with every string, keys included, redacted."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {redact_data(k, redact): redact_data(v, redact) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact_data(item, redact) for item in value]
    return value
