"""What the OpenAI and Anthropic providers share: importing the SDK late and owning its client.

The HTTP transport: both SDKs ship an aiohttp-backed client (`DefaultAioHttpClient`, needing the
`aiohttp` package, which orchestrai depends on through the SDKs' `[aiohttp]` extras). We use it by
default because the SDKs' default httpx/httpcore pool does not scale to hundreds of calls in flight:
it walks every connection on each request (O(connections) per call) and keeps at most 100 idle
connections, so a second wave of 1,000 calls opens ~900 new ones. aiohttp's connector keeps every
released connection (up to its limit) for reuse and takes one from a queue without scanning the
others. benchmarks/RESULTS.md ("http") has the figures.

`ORCHESTRAI_HTTP_TRANSPORT=httpx` selects the SDK's default client instead (an escape hatch, and what
the benchmark compares against); without aiohttp installed that is what happens anyway.
"""

from __future__ import annotations

import importlib
import os
from typing import Any

from ..errors import MissingExtraError, ProviderError
from .sdk_errors import translate

TRANSPORT_ENV = "ORCHESTRAI_HTTP_TRANSPORT"
TRANSPORTS = ("aiohttp", "httpx")
MAX_CONNECTIONS = 1000  # per provider, as the SDKs' own default; fewer when the fd limit is low
KEEPALIVE_S = 5.0  # idle connections are closed after this (httpx's and aiohttp's usual default)


def wanted_transport() -> str:
    """The transport asked for: `ORCHESTRAI_HTTP_TRANSPORT` (aiohttp or httpx), aiohttp when unset."""
    value = os.environ.get(TRANSPORT_ENV, "").strip().lower() or "aiohttp"
    return value if value in TRANSPORTS else "aiohttp"


def max_connections() -> int:
    """At most MAX_CONNECTIONS, and at most half the process's open-file limit (macOS defaults to 256).

    Past the limit, calls wait for a free connection instead of failing with "too many open files".
    """
    try:
        import resource

        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    except (ImportError, OSError, ValueError):  # pragma: no cover - Windows
        return MAX_CONNECTIONS
    if soft == resource.RLIM_INFINITY or soft <= 0:
        return MAX_CONNECTIONS
    return min(MAX_CONNECTIONS, max(16, soft // 2))


def make_http_client(sdk: Any, timeout_s: float, transport: str | None = None) -> tuple[Any | None, str]:
    """The `http_client` to give the SDK's async client, and the transport's name.

    `sdk` is the imported `openai` or `anthropic` module. Returns `(None, "httpx")` (the SDK's own
    default client) when httpx is asked for, or when the SDK or aiohttp cannot provide the aiohttp
    client (an older SDK, aiohttp not installed).
    """
    transport = transport or wanted_transport()
    factory = getattr(sdk, "DefaultAioHttpClient", None)
    default_limits = getattr(sdk, "DEFAULT_CONNECTION_LIMITS", None)  # an httpx(2).Limits
    if transport != "aiohttp" or factory is None or default_limits is None:
        return None, "httpx"
    try:
        # aiohttp's connector honours max_connections and keepalive_expiry; it keeps every released
        # connection (up to max_connections) for reuse, whatever max_keepalive_connections says.
        connections = max_connections()
        limits = type(default_limits)(max_connections=connections, max_keepalive_connections=connections,
                                      keepalive_expiry=KEEPALIVE_S)
        return factory(timeout=timeout_s, limits=limits), "aiohttp"
    except (ImportError, RuntimeError, TypeError):
        # The SDK's placeholder raises RuntimeError when aiohttp is missing; an SDK that predates
        # its vendored adapter may raise ImportError; one with other Limits fields, TypeError.
        return None, "httpx"


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
        http_client, self.transport = make_http_client(self._sdk, timeout_s)
        extra = {"http_client": http_client} if http_client is not None else {}
        # Retries are ours (recorded in the memory log), so the SDK must not retry behind our back.
        client = getattr(self._sdk, self.client_class)
        self._client: Any = client(api_key=api_key, base_url=base_url, timeout=timeout_s, max_retries=0, **extra)
        self.base_url = str(self._client.base_url).rstrip("/")

    def _error(self, exc: Exception, model: str) -> ProviderError:
        return translate(exc, provider=self.name, model=model, base_url=self.base_url, key_env=self._key_env)

    async def aclose(self) -> None:
        # Closes the http client too (the SDK closes a given `http_client` as its own), and with it
        # aiohttp's session and its kept-alive connections.
        await self._client.close()
