"""Translate openai / anthropic SDK exceptions into one-line ProviderErrors.

Both SDKs share the same exception shapes (status_code, response headers, APITimeoutError being a
kind of APIConnectionError), so one translator serves both.
"""

from __future__ import annotations

import asyncio

from ..errors import ProviderError

_SERVER_MESSAGE_CHARS = 200


def translate(exc: Exception, *, provider: str, model: str, base_url: str, key_env: str | None) -> ProviderError:
    """A ProviderError naming the provider and the cause, with a hint on what to do."""
    status = getattr(exc, "status_code", None)
    detail = _server_message(exc)
    if status is None:
        if _is_timeout(exc):
            return ProviderError(f"provider {provider!r} did not answer in time ({base_url})", kind="timeout",
                                 hint="raise providers.<name>.timeout_s in config.yml, or check the server")
        return ProviderError(f"provider {provider!r}: cannot connect to {base_url}", kind="connection",
                             hint="is the server running and is base_url right (it usually ends in /v1)?")
    if status in (401, 403):
        key_hint = f"check {key_env}" if key_env else f"check providers.{provider}.api_key"
        return ProviderError(f"provider {provider!r} rejected the API key ({status}): {detail}", kind="auth",
                             hint=f"{key_hint}; the key may be wrong, revoked or lack access")
    if status == 404:
        return ProviderError(f"provider {provider!r} does not know model {model!r} (404): {detail}", kind="not_found",
                             hint="check model_config.model, and that base_url points at the API root")
    if status == 429:
        return ProviderError(f"provider {provider!r} rate limited the request (429): {detail}", kind="rate_limit",
                             hint="lower max_concurrency, or wait and try again", retry_after_s=_retry_after(exc))
    if status >= 500:
        return ProviderError(f"provider {provider!r} had a server error ({status}): {detail}", kind="server",
                             hint="usually temporary: try again later")
    return ProviderError(f"provider {provider!r} refused the request ({status}): {detail}", kind="bad_request",
                         hint="check the step's model_config parameters")


def _is_timeout(exc: BaseException) -> bool:
    """Whether a request failed because it took too long, rather than because it could not connect.

    With the aiohttp transport the SDK's exception is not to be trusted: the adapter vendored in the
    openai SDK maps every aiohttp connection error (refused, reset, server disconnected) to
    `httpx.ConnectTimeout`, so the SDK raises `APITimeoutError` for a refused connection. The
    aiohttp exception behind it says what happened: its timeouts are `asyncio.TimeoutError`s (not
    the built-in `TimeoutError` before Python 3.11).
    """
    seen: set[int] = set()
    cause: BaseException | None = exc
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        if type(cause).__module__.startswith("aiohttp"):
            return isinstance(cause, (TimeoutError, asyncio.TimeoutError))
        cause = cause.__cause__ or cause.__context__
    return "Timeout" in type(exc).__name__


def _server_message(exc: Exception) -> str:
    body = getattr(exc, "body", None)
    message = None
    if isinstance(body, dict):
        error = body.get("error", body)
        message = error.get("message") if isinstance(error, dict) else None
    text = str(message or getattr(exc, "message", None) or exc)
    return text if len(text) <= _SERVER_MESSAGE_CHARS else text[:_SERVER_MESSAGE_CHARS] + "…"


def _retry_after(exc: Exception) -> float | None:
    response = getattr(exc, "response", None)
    value = response.headers.get("retry-after") if response is not None else None
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None  # an HTTP date; we fall back to our own backoff
