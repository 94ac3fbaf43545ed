"""What the OpenAI and Anthropic providers share: importing the SDK late and owning its client."""

from __future__ import annotations

import importlib
from typing import Any

from ..errors import MissingExtraError, ProviderError
from .sdk_errors import translate


class SDKProvider:
    """A provider backed by an official async SDK client (`sdk` module, `client_class` in it)."""

    sdk: str = ""
    client_class: str = ""

    def __init__(self, name: str, *, api_key: str, base_url: str | None, timeout_s: float, key_env: str | None) -> None:
        try:
            # Imported here, not at the top: each SDK costs about half a second to import.
            self._sdk = importlib.import_module(self.sdk)
        except ImportError as exc:  # pragma: no cover - a dependency of the package
            raise MissingExtraError(f"the {self.sdk} package is not installed", hint=f"pip install {self.sdk}") from exc
        self.name = name
        self._key_env = key_env
        # Retries are ours (recorded in the memory log), so the SDK must not retry behind our back.
        client = getattr(self._sdk, self.client_class)
        self._client: Any = client(api_key=api_key, base_url=base_url, timeout=timeout_s, max_retries=0)
        self.base_url = str(self._client.base_url).rstrip("/")

    def _error(self, exc: Exception, model: str) -> ProviderError:
        return translate(exc, provider=self.name, model=model, base_url=self.base_url, key_env=self._key_env)

    async def aclose(self) -> None:
        await self._client.close()
