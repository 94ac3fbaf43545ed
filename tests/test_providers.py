"""Contract tests: our providers over the real openai / anthropic SDKs against the loopback fake server.

Every SDK test runs over both HTTP transports: aiohttp (the default) and the SDK's own httpx client
(`ORCHESTRAI_HTTP_TRANSPORT=httpx`). tests/test_http_transport.py covers what differs between them.
"""

from __future__ import annotations

import asyncio
import os

import pytest
from fake_llm_server import FakeLLMServer

from orchestrai.api import Message
from orchestrai.errors import ProviderError
from orchestrai.providers.anthropic_api import AnthropicProvider
from orchestrai.providers.echo import EchoProvider
from orchestrai.providers.openai_api import OpenAIProvider
from orchestrai.providers.pricing import PriceTable

MESSAGES = [Message("system", "You are terse."), Message("user", "Say hello to the tests")]
KEYS = {"openai": "sk-test-key-123456", "anthropic": "sk-ant-test-123456"}


@pytest.fixture(params=["aiohttp", "httpx"])
def transport(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run the test over this HTTP transport; `make` checks the provider really uses it."""
    monkeypatch.setenv("ORCHESTRAI_HTTP_TRANSPORT", request.param)
    return request.param


def make(kind: str, server: FakeLLMServer, *, base_url: str | None = None, timeout_s: float = 5.0):
    if kind == "openai":
        provider = OpenAIProvider("openai", api_key=KEYS[kind], base_url=base_url or server.base_url,
                                  timeout_s=timeout_s, key_env="OPENAI_API_KEY")
    else:
        provider = AnthropicProvider("anthropic", api_key=KEYS[kind], base_url=base_url or server.root_url,
                                     timeout_s=timeout_s, key_env="ANTHROPIC_API_KEY")
    wanted = os.environ.get("ORCHESTRAI_HTTP_TRANSPORT", "aiohttp")
    assert provider.transport == wanted, f"asked for {wanted}, the provider uses {provider.transport}"
    return provider


def secrets_absent(error: ProviderError, kind: str) -> bool:
    return all(KEYS[kind] not in text for text in (error.message, error.hint or "", str(error)))


def complete(provider, settings, **kw):
    async def go():
        try:
            return await provider.complete(MESSAGES, settings, **kw)
        finally:
            await provider.aclose()
    return asyncio.run(go())


MODELS = {"openai": "gpt-4o-mini", "anthropic": "claude-haiku-4-5"}


@pytest.mark.parametrize("kind", ["openai", "anthropic"])
def test_success_with_usage_and_id(fake_server: FakeLLMServer, kind: str, transport: str) -> None:
    fake_server.queue_reply("Hello, tests!", usage=(42, 7))
    completion = complete(make(kind, fake_server), {"model": MODELS[kind], "temperature": 0.1, "max_tokens": 50})
    assert completion.text == "Hello, tests!"
    assert (completion.usage.input_tokens, completion.usage.output_tokens) == (42, 7)
    assert completion.model == MODELS[kind] and completion.provider == kind and completion.raw_id
    [request] = fake_server.requests
    assert request.body["temperature"] == 0.1 and request.body["max_tokens"] == 50
    if kind == "anthropic":
        assert request.system == "You are terse."  # the system prompt travels in `system`
        assert [m["role"] for m in request.messages] == ["user"]
    else:
        assert [m["role"] for m in request.messages] == ["system", "user"]


def test_anthropic_gets_a_default_max_tokens(fake_server: FakeLLMServer, transport: str) -> None:
    complete(make("anthropic", fake_server), {"model": "claude-haiku-4-5"})
    assert fake_server.requests[0].body["max_tokens"] == 4096


@pytest.mark.parametrize("kind", ["openai", "anthropic"])
def test_streaming_delivers_tokens_and_usage(fake_server: FakeLLMServer, kind: str, transport: str) -> None:
    fake_server.queue_reply("one two three four", usage=(11, 4))
    pieces: list[str] = []
    completion = complete(make(kind, fake_server), {"model": MODELS[kind]}, on_token=pieces.append)
    assert len(pieces) >= 3 and "".join(pieces) == "one two three four" == completion.text
    assert (completion.usage.input_tokens, completion.usage.output_tokens) == (11, 4)
    assert fake_server.requests[0].stream


@pytest.mark.parametrize("kind", ["openai", "anthropic"])
@pytest.mark.parametrize("status,error_kind,retryable,phrase", [
    (401, "auth", False, "rejected the API key (401)"),
    (404, "not_found", False, "does not know model"),
    (429, "rate_limit", True, "rate limited the request (429)"),
    (500, "server", True, "server error (500)"),
    (400, "bad_request", False, "refused the request (400)"),
])
def test_errors_translate_to_one_line(fake_server: FakeLLMServer, kind: str, status: int, error_kind: str,
                                      retryable: bool, phrase: str, transport: str) -> None:
    fake_server.queue_reply("the server says no", status=status, headers={"Retry-After": "2"})
    with pytest.raises(ProviderError) as caught:
        complete(make(kind, fake_server), {"model": MODELS[kind]})
    error = caught.value
    assert error.kind == error_kind and error.retryable is retryable
    assert phrase in error.message and "the server says no" in error.message and "\n" not in error.message
    assert len(fake_server.requests) == 1, "the SDK must not retry behind our back"
    if status == 429:
        assert error.retry_after_s == 2.0
    assert secrets_absent(error, kind)


@pytest.mark.parametrize("kind", ["openai", "anthropic"])
def test_timeout(fake_server: FakeLLMServer, kind: str, transport: str) -> None:
    fake_server.queue_reply("late", latency_s=2.0)
    with pytest.raises(ProviderError) as caught:
        complete(make(kind, fake_server, timeout_s=0.3), {"model": MODELS[kind]})
    assert caught.value.kind == "timeout" and "did not answer in time" in caught.value.message
    assert secrets_absent(caught.value, kind)


@pytest.mark.parametrize("kind", ["openai", "anthropic"])
def test_connection_refused(fake_server: FakeLLMServer, kind: str, transport: str) -> None:
    import socket

    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}" + ("/v1" if kind == "openai" else "")
    with pytest.raises(ProviderError) as caught:
        complete(make(kind, fake_server, base_url=url), {"model": MODELS[kind]})
    assert caught.value.kind == "connection" and f"cannot connect to http://127.0.0.1:{port}" in caught.value.message
    assert secrets_absent(caught.value, kind)


def test_echo_is_deterministic_and_offline() -> None:
    provider = EchoProvider()
    first = asyncio.run(provider.complete(MESSAGES, {"model": "m"}))
    second = asyncio.run(provider.complete(MESSAGES, {"model": "m"}))
    assert first.text == second.text == "[echo m] Say hello to the tests"
    assert first.usage.input_tokens > 0


def test_pricing_known_family_override_and_unknown() -> None:
    prices = PriceTable({"my-local": (0.0, 0.0)})
    assert prices.cost("gpt-4o-mini", 1_000_000, 1_000_000) == pytest.approx(0.75)
    assert prices.cost("gpt-4o-mini-2024-07-18", 1_000_000, 0) == pytest.approx(0.15)  # snapshot priced as family
    assert prices.cost("claude-sonnet-4-5-20250929", 0, 1_000_000) == pytest.approx(15.0)
    assert prices.cost("my-local", 10, 10) == 0.0
    assert prices.cost("llama3", 10, 10) is None  # unknown: never a guess
