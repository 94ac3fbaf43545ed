"""The SDK providers' HTTP transport: aiohttp by default, the SDK's httpx client as the fallback.

Against the loopback fake server only (127.0.0.1). tests/test_providers.py runs the provider contract
(replies, streaming, error translation, timeouts) over both transports; this file covers what is
specific to the choice: which client is built, connection reuse and limits, closing, the fallback
when aiohttp is missing, and connection errors that the openai SDK's aiohttp adapter reports as
timeouts.
"""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import textwrap
import threading
import types
from pathlib import Path

import pytest
from fake_llm_server import FakeLLMServer

from orchestrai.api import Message
from orchestrai.errors import ProviderError
from orchestrai.providers import sdk_client
from orchestrai.providers.anthropic_api import AnthropicProvider
from orchestrai.providers.openai_api import OpenAIProvider
from orchestrai.providers.sdk_client import make_http_client, max_connections, wanted_transport

MESSAGES = [Message("system", "You are terse."), Message("user", "Say hello")]
MODELS = {"openai": "gpt-4o-mini", "anthropic": "claude-haiku-4-5"}
KINDS = ["openai", "anthropic"]


def make(kind: str, server: FakeLLMServer | None = None, *, base_url: str | None = None, timeout_s: float = 5.0):
    if kind == "openai":
        return OpenAIProvider("openai", api_key="sk-test-key-123456", timeout_s=timeout_s, key_env="OPENAI_API_KEY",
                              base_url=base_url or (server.base_url if server else None))
    return AnthropicProvider("anthropic", api_key="sk-ant-test-123456", timeout_s=timeout_s,
                             key_env="ANTHROPIC_API_KEY", base_url=base_url or (server.root_url if server else None))


def http_transport(provider):
    """The httpx(2) transport under the SDK client (SDK and httpx internals: fine for a test)."""
    return provider._client._client._transport


async def wave(provider, kind: str, width: int) -> list[str]:
    calls = [provider.complete([Message("user", f"call {i}")], {"model": MODELS[kind]}) for i in range(width)]
    return [c.text for c in await asyncio.gather(*calls)]


@pytest.fixture
def aiohttp_transport(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("aiohttp")
    monkeypatch.delenv("ORCHESTRAI_HTTP_TRANSPORT", raising=False)


# --- which client -------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_aiohttp_is_the_default_with_the_high_connection_limit(kind: str, aiohttp_transport: None) -> None:
    provider = make(kind, base_url="http://127.0.0.1:9/v1")
    try:
        assert provider.transport == "aiohttp"
        transport = http_transport(provider)
        assert type(transport).__name__ == "AiohttpTransport"
        assert transport.limits.max_connections == max_connections()
        assert provider._client.max_retries == 0  # retries stay ours
    finally:
        asyncio.run(provider.aclose())


@pytest.mark.parametrize("kind", KINDS)
def test_env_selects_the_sdk_httpx_client(kind: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORCHESTRAI_HTTP_TRANSPORT", "httpx")
    provider = make(kind, base_url="http://127.0.0.1:9/v1")
    try:
        assert provider.transport == "httpx"
        assert type(http_transport(provider)).__name__ != "AiohttpTransport"
    finally:
        asyncio.run(provider.aclose())


def test_wanted_transport_reads_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ORCHESTRAI_HTTP_TRANSPORT", raising=False)
    assert wanted_transport() == "aiohttp"
    monkeypatch.setenv("ORCHESTRAI_HTTP_TRANSPORT", " HTTPX ")
    assert wanted_transport() == "httpx"
    monkeypatch.setenv("ORCHESTRAI_HTTP_TRANSPORT", "curl")  # unknown: the default
    assert wanted_transport() == "aiohttp"


def test_sdk_without_a_usable_aiohttp_client_falls_back_to_httpx() -> None:
    import httpx2

    def missing(**_kwargs):  # what the SDKs' placeholder does when aiohttp is not installed
        raise RuntimeError("To use the aiohttp client you must have installed the package with the `aiohttp` extra")

    without_aiohttp = types.SimpleNamespace(DefaultAioHttpClient=missing, DEFAULT_CONNECTION_LIMITS=httpx2.Limits())
    assert make_http_client(without_aiohttp, 5.0, "aiohttp") == (None, "httpx")
    too_old = types.SimpleNamespace(DEFAULT_CONNECTION_LIMITS=httpx2.Limits())  # no DefaultAioHttpClient at all
    assert make_http_client(too_old, 5.0, "aiohttp") == (None, "httpx")
    assert make_http_client(types.SimpleNamespace(), 5.0, "aiohttp") == (None, "httpx")


@pytest.mark.parametrize("kind", KINDS)
def test_without_aiohttp_installed_calls_go_through_httpx(kind: str, fake_server: FakeLLMServer,
                                                          tmp_path: Path) -> None:
    """A fresh interpreter where `import aiohttp` fails, as on an install without it."""
    fake_server.queue_reply("still works")
    fake_server.queue_reply("no such model", status=404)
    script = tmp_path / "no_aiohttp.py"
    script.write_text(textwrap.dedent(f"""
        import asyncio, json, sys
        sys.modules["aiohttp"] = None  # makes `import aiohttp` raise ImportError
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from test_http_transport import make, MESSAGES, MODELS
        from orchestrai.errors import ProviderError

        class Server:
            base_url, root_url = {fake_server.base_url!r}, {fake_server.root_url!r}

        async def go():
            provider = make({kind!r}, Server())
            try:
                text = (await provider.complete(MESSAGES, {{"model": MODELS[{kind!r}]}})).text
                try:
                    await provider.complete(MESSAGES, {{"model": MODELS[{kind!r}]}})
                    error = None
                except ProviderError as exc:
                    error = exc.kind
                return {{"transport": provider.transport, "text": text, "error": error,
                         "aiohttp": sys.modules.get("aiohttp") is not None}}
            finally:
                await provider.aclose()

        print(json.dumps(asyncio.run(go())))
        """), encoding="utf-8")
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1]) == {
        "transport": "httpx", "text": "still works", "error": "not_found", "aiohttp": False}


# --- connections ----------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_a_second_wave_reuses_every_connection(kind: str, fake_server: FakeLLMServer, aiohttp_transport: None) -> None:
    """The SDKs' httpx pool keeps at most 100 idle connections; aiohttp keeps every one it opened."""
    fake_server.latency_s = 0.2  # long enough for all the calls of a wave to be in flight together
    width = 120

    async def go() -> tuple[int, int]:
        provider = make(kind, fake_server)
        try:
            await wave(provider, kind, width)
            after_first = fake_server.connections_opened
            await wave(provider, kind, width)
            return after_first, fake_server.connections_opened
        finally:
            await provider.aclose()

    after_first, after_second = asyncio.run(go())
    assert fake_server.max_in_flight > 100
    assert after_first <= width
    assert after_second == after_first, "the second wave opened new connections"


@pytest.mark.parametrize("kind", KINDS)
def test_calls_past_the_connection_limit_wait_instead_of_failing(kind: str, fake_server: FakeLLMServer,
                                                                 aiohttp_transport: None,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sdk_client, "MAX_CONNECTIONS", 4)
    fake_server.latency_s = 0.05

    async def go() -> list[str]:
        provider = make(kind, fake_server)
        try:
            return await wave(provider, kind, 12)
        finally:
            await provider.aclose()

    texts = asyncio.run(go())
    assert len(texts) == 12 and all(texts)
    assert fake_server.max_in_flight <= 4 and fake_server.connections_opened <= 4


def test_the_connection_limit_stays_under_half_the_open_file_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    import resource

    for soft, expected in [(256, 128), (1024, 512), (20_000, 1000), (10, 16), (resource.RLIM_INFINITY, 1000)]:
        monkeypatch.setattr(resource, "getrlimit", lambda _which, soft=soft: (soft, resource.RLIM_INFINITY))
        assert max_connections() == expected, soft


@pytest.mark.parametrize("kind", KINDS)
def test_aclose_closes_the_session_and_its_connections(kind: str, fake_server: FakeLLMServer,
                                                       aiohttp_transport: None, recwarn: pytest.WarningsRecorder,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    async def go():
        provider = make(kind, fake_server)
        await wave(provider, kind, 3)
        session = http_transport(provider).client
        assert not session.closed and session.connector is not None
        await provider.aclose()
        return session

    session = asyncio.run(go())
    assert session.closed
    import gc

    gc.collect()
    unclosed = [str(w.message) for w in recwarn if "nclosed" in str(w.message)]
    unclosed += [r.getMessage() for r in caplog.records if "nclosed" in r.getMessage()]
    assert not unclosed


# --- errors through aiohttp ----------------------------------------------------------------------


@pytest.fixture
def hang_up_port():
    """A port whose server reads the request and closes the connection without answering."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            with conn:
                conn.recv(65536)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield listener.getsockname()[1]
    stop.set()
    listener.close()


@pytest.mark.parametrize("transport", ["aiohttp", "httpx"])
@pytest.mark.parametrize("kind", KINDS)
def test_a_server_hanging_up_is_a_connection_error_not_a_timeout(kind: str, transport: str, hang_up_port: int,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """openai's aiohttp adapter maps every aiohttp connection error to ConnectTimeout (APITimeoutError)."""
    monkeypatch.setenv("ORCHESTRAI_HTTP_TRANSPORT", transport)
    url = f"http://127.0.0.1:{hang_up_port}" + ("/v1" if kind == "openai" else "")
    provider = make(kind, base_url=url, timeout_s=5.0)
    assert provider.transport == transport

    async def go() -> None:
        try:
            await provider.complete(MESSAGES, {"model": MODELS[kind]})
        finally:
            await provider.aclose()

    with pytest.raises(ProviderError) as caught:
        asyncio.run(go())
    assert caught.value.kind == "connection" and caught.value.retryable
    assert "cannot connect" in caught.value.message


@pytest.mark.parametrize("kind", KINDS)
def test_stream_cut_by_a_timeout_is_a_timeout(kind: str, fake_server: FakeLLMServer, aiohttp_transport: None) -> None:
    """A streamed request that gets no answer in time: aiohttp's read timeout, reported as ours."""
    fake_server.queue_reply("too late", latency_s=2.0)
    provider = make(kind, fake_server, timeout_s=0.3)

    async def go() -> None:
        try:
            await provider.complete(MESSAGES, {"model": MODELS[kind]}, on_token=lambda _t: None)
        finally:
            await provider.aclose()

    with pytest.raises(ProviderError) as caught:
        asyncio.run(go())
    assert caught.value.kind == "timeout" and "did not answer in time" in caught.value.message


def test_the_aiohttp_error_behind_the_sdk_error_decides_timeout_or_connection() -> None:
    from orchestrai.providers.sdk_errors import _is_timeout

    class APITimeoutError(Exception):
        pass

    class APIConnectionError(Exception):
        pass

    def caused(outer: Exception, cause: BaseException) -> Exception:
        outer.__cause__ = cause
        return outer

    assert _is_timeout(APITimeoutError())
    assert not _is_timeout(APIConnectionError())
    assert _is_timeout(caused(APITimeoutError(), ConnectionRefusedError()))  # no aiohttp: the SDK's class decides
    aiohttp = pytest.importorskip("aiohttp")
    assert not _is_timeout(caused(APITimeoutError(), aiohttp.ServerDisconnectedError()))
    assert _is_timeout(caused(APITimeoutError(), aiohttp.SocketTimeoutError("read")))
    assert _is_timeout(caused(APIConnectionError(), aiohttp.ServerTimeoutError("read")))
    assert not _is_timeout(caused(APITimeoutError(), caused(aiohttp.ClientOSError(), ConnectionResetError())))


# --- through a run ---------------------------------------------------------------------------------


def test_a_run_goes_through_aiohttp_and_closes_its_sessions(project: Path, server_config: Path, keys: dict,
                                                            fake_server: FakeLLMServer, aiohttp_transport: None,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """A pipeline with parallel steps on both SDKs: every call over aiohttp, every session closed at the end."""
    from conftest import write
    from helpers import run_library

    from orchestrai.providers.sdk_client import SDKProvider

    created: list = []
    original_init = SDKProvider.__init__

    def recording_init(self, *args, **kwargs) -> None:
        original_init(self, *args, **kwargs)
        created.append(self)

    monkeypatch.setattr(SDKProvider, "__init__", recording_init)
    write(project / "wide.yml", """
        pipeline:
          - {module: start_module, output_name: request}
          - {module: translator, inputs: [request], output_name: a}
          - module: translator
            inputs: [request]
            output_name: b
            model_config: {provider: anthropic, model: claude-haiku-4-5}
          - {module: translator, inputs: [request], output_name: c}
          - {module: enhancer, inputs: [request, a, b, c], output_name: better}
        """)
    fake_server.latency_s = 0.05
    result, _ = run_library("wide.yml", inputs={"request": "R"})
    assert result.status == "completed"
    assert sorted(p.name for p in created) == ["anthropic", "openai"]
    assert {p.transport for p in created} == {"aiohttp"}
    sessions = [http_transport(p).client for p in created]
    assert all(s is not None and s.closed for s in sessions), "the run must close its providers' sessions"
    assert len([r for r in fake_server.requests if r.body.get("model")]) == 4
