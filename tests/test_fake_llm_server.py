"""Checks tests/fake_llm_server.py against the real openai and anthropic SDKs (loopback only)."""

from __future__ import annotations

import asyncio
import dataclasses
import http.client
import json
import time

import anthropic
import openai
import pytest
from fake_llm_server import FakeLLMServer, RecordedRequest

OPENAI_MODEL = "gpt-fake-1"
CLAUDE_MODEL = "claude-fake-1"


@pytest.fixture
def server():
    with FakeLLMServer() as srv:
        yield srv


def oai(srv: FakeLLMServer) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(api_key="test-key", base_url=srv.base_url, max_retries=0, timeout=5)


def claude(srv: FakeLLMServer) -> anthropic.AsyncAnthropic:
    return anthropic.AsyncAnthropic(api_key="test-key", base_url=srv.root_url, max_retries=0, timeout=5)


async def oai_chat(srv: FakeLLMServer, content: str = "Hello there", **kw):
    async with oai(srv) as client:
        return await client.chat.completions.create(
            model=OPENAI_MODEL, messages=[{"role": "user", "content": content}], **kw
        )


async def claude_msg(srv: FakeLLMServer, content: str = "Hello there", **kw):
    async with claude(srv) as client:
        return await client.messages.create(
            model=CLAUDE_MODEL, max_tokens=64, messages=[{"role": "user", "content": content}], **kw
        )


def raw_request(srv: FakeLLMServer, method: str, path: str, body: dict | None = None, headers: dict | None = None):
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=5)
    try:
        conn.request(method, path, body=json.dumps(body) if body is not None else None, headers=headers or {})
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), json.loads(response.read())
    finally:
        conn.close()


# ---------------------------------------------------------------- non-streaming


def test_openai_non_streaming_reply_usage_model(server):
    server.queue_reply("The answer is 42.", usage=(17, 5))
    messages = [{"role": "system", "content": "Be terse."}, {"role": "user", "content": "What is it?"}]

    async def go():
        async with oai(server) as client:
            return await client.chat.completions.create(model=OPENAI_MODEL, messages=messages, temperature=0)

    resp = asyncio.run(go())
    assert resp.choices[0].message.content == "The answer is 42."
    assert resp.choices[0].message.role == "assistant"
    assert resp.choices[0].finish_reason == "stop"
    assert resp.model == OPENAI_MODEL
    assert resp.id.startswith("chatcmpl-")
    assert (resp.usage.prompt_tokens, resp.usage.completion_tokens, resp.usage.total_tokens) == (17, 5, 22)

    [req] = server.requests
    assert req.path == "/v1/chat/completions"
    assert req.api == "openai"
    assert req.body["messages"] == messages and req.body["temperature"] == 0
    assert req.model == OPENAI_MODEL and req.messages == messages
    assert req.system == "Be terse." and req.stream is False
    assert req.headers["authorization"] == "Bearer test-key"


def test_anthropic_non_streaming_reply_usage_model(server):
    server.queue_reply("Bonjour.", usage=(9, 2))

    async def go():
        async with claude(server) as client:
            return await client.messages.create(
                model=CLAUDE_MODEL,
                max_tokens=64,
                system="You translate to French.",
                messages=[{"role": "user", "content": "Hello."}],
            )

    msg = asyncio.run(go())
    assert msg.content[0].type == "text" and msg.content[0].text == "Bonjour."
    assert msg.model == CLAUDE_MODEL
    assert msg.id.startswith("msg_")
    assert msg.role == "assistant" and msg.stop_reason == "end_turn"
    assert (msg.usage.input_tokens, msg.usage.output_tokens) == (9, 2)

    [req] = server.requests
    assert req.path == "/v1/messages" and req.api == "anthropic"
    assert req.system == "You translate to French."
    assert req.messages == [{"role": "user", "content": "Hello."}]
    assert req.body["max_tokens"] == 64
    assert "anthropic-version" in req.headers


def test_default_reply_and_computed_usage():
    content = "x" * 100
    with FakeLLMServer() as srv:
        resp = asyncio.run(oai_chat(srv, content))
        msg = asyncio.run(claude_msg(srv, content))
    expected_oai = f"reply to {OPENAI_MODEL}: {'x' * 60}"
    assert resp.choices[0].message.content == expected_oai
    assert resp.usage.prompt_tokens == 25 and resp.usage.completion_tokens == len(expected_oai) // 4
    expected_claude = f"reply to {CLAUDE_MODEL}: {'x' * 60}"
    assert msg.content[0].text == expected_claude
    assert msg.usage.input_tokens == 25 and msg.usage.output_tokens == len(expected_claude) // 4

    with FakeLLMServer(default_reply="fixed") as srv:
        assert asyncio.run(oai_chat(srv, "a")).choices[0].message.content == "fixed"
        msg = asyncio.run(claude_msg(srv, "a"))
        assert msg.content[0].text == "fixed"
        assert (msg.usage.input_tokens, msg.usage.output_tokens) == (1, 1)


# ---------------------------------------------------------------- streaming

LONG_TEXT = "Streaming works: one word at a time,\nacross lines too."


def test_openai_streaming_deltas_and_usage(server):
    server.queue_reply(LONG_TEXT, usage=(30, 12))

    async def go():
        async with oai(server) as client:
            stream = await client.chat.completions.create(
                model=OPENAI_MODEL,
                messages=[{"role": "user", "content": "stream please"}],
                stream=True,
                stream_options={"include_usage": True},
            )
            return [chunk async for chunk in stream]

    chunks = asyncio.run(go())
    deltas = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    assert len(deltas) > 3
    assert "".join(deltas) == LONG_TEXT
    assert chunks[0].choices[0].delta.role == "assistant"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert all(c.model == OPENAI_MODEL and c.id.startswith("chatcmpl-") for c in chunks)
    assert len({c.id for c in chunks}) == 1
    assert chunks[-1].choices == []
    assert (chunks[-1].usage.prompt_tokens, chunks[-1].usage.completion_tokens) == (30, 12)
    assert chunks[-1].usage.total_tokens == 42
    assert all(c.usage is None for c in chunks[:-1])
    assert server.requests[0].stream is True


def test_openai_streaming_without_usage_has_no_usage_chunk(server):
    async def go():
        async with oai(server) as client:
            stream = await client.chat.completions.create(
                model=OPENAI_MODEL, messages=[{"role": "user", "content": "hi you"}], stream=True
            )
            return [chunk async for chunk in stream]

    chunks = asyncio.run(go())
    assert all(c.usage is None and c.choices for c in chunks)
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == f"reply to {OPENAI_MODEL}: hi you"


def test_anthropic_streaming_events_deltas_and_usage(server):
    server.queue_reply(LONG_TEXT, usage=(30, 12))
    server.queue_reply(LONG_TEXT, usage=(30, 12))

    async def go():
        async with claude(server) as client:
            stream = await client.messages.create(
                model=CLAUDE_MODEL, max_tokens=64, messages=[{"role": "user", "content": "stream"}], stream=True
            )
            events = [event async for event in stream]
            async with client.messages.stream(
                model=CLAUDE_MODEL, max_tokens=64, messages=[{"role": "user", "content": "stream"}]
            ) as helper:
                helper_text = [text async for text in helper.text_stream]
                final = await helper.get_final_message()
            return events, helper_text, final

    events, helper_text, final = asyncio.run(go())
    types = [e.type for e in events]
    assert types[:2] == ["message_start", "content_block_start"]
    assert types[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    assert set(types[2:-3]) == {"content_block_delta"}
    deltas = [e.delta.text for e in events if e.type == "content_block_delta"]
    assert len(deltas) > 3 and "".join(deltas) == LONG_TEXT
    start = events[0].message
    assert start.model == CLAUDE_MODEL and start.id.startswith("msg_") and start.usage.input_tokens == 30
    message_delta = events[-2]
    assert message_delta.delta.stop_reason == "end_turn"
    assert message_delta.usage.output_tokens == 12

    assert "".join(helper_text) == LONG_TEXT and len(helper_text) > 3
    assert final.content[0].text == LONG_TEXT
    assert (final.usage.input_tokens, final.usage.output_tokens) == (30, 12)
    assert final.stop_reason == "end_turn" and final.model == CLAUDE_MODEL


def test_keep_alive_connection_reused_across_streams(server):
    async def go():
        async with oai(server) as client:
            for stream in (False, True, False, True):
                resp = await client.chat.completions.create(
                    model=OPENAI_MODEL, messages=[{"role": "user", "content": "again"}], stream=stream
                )
                if stream:
                    [chunk async for chunk in resp]
        async with claude(server) as client:
            for _ in range(2):
                stream = await client.messages.create(
                    model=CLAUDE_MODEL, max_tokens=8, messages=[{"role": "user", "content": "x"}], stream=True
                )
                [event async for event in stream]
                await client.messages.create(
                    model=CLAUDE_MODEL, max_tokens=8, messages=[{"role": "user", "content": "y"}]
                )

    asyncio.run(go())
    assert len(server.requests) == 8
    assert server.connections_opened == 2  # one per client: every response left the connection reusable


# ---------------------------------------------------------------- errors

ERROR_CASES = [
    (401, openai.AuthenticationError, anthropic.AuthenticationError),
    (404, openai.NotFoundError, anthropic.NotFoundError),
    (429, openai.RateLimitError, anthropic.RateLimitError),
    (500, openai.InternalServerError, anthropic.InternalServerError),
    (503, openai.InternalServerError, anthropic.InternalServerError),
]


@pytest.mark.parametrize("stream", [False, True])
def test_openai_error_statuses_raise_sdk_exceptions(server, stream):
    async def go():
        async with oai(server) as client:
            for status, exc_class, _ in ERROR_CASES:
                server.queue_reply(f"scripted {status}", status=status, headers={"Retry-After": "0"})
                with pytest.raises(exc_class) as err:
                    await client.chat.completions.create(
                        model=OPENAI_MODEL, messages=[{"role": "user", "content": "q"}], stream=stream
                    )
                exc = err.value
                assert exc.status_code == status
                assert f"scripted {status}" in str(exc)
                assert exc.body["message"] == f"scripted {status}"  # the SDK keeps body["error"]
                assert set(exc.body) >= {"message", "type", "code"}
                assert exc.response.headers["retry-after"] == "0"
                assert exc.request_id and exc.request_id.startswith("req_")
                if status == 429:
                    assert exc.code == "rate_limit_exceeded"
            # the connection survived every error response
            resp = await client.chat.completions.create(
                model=OPENAI_MODEL, messages=[{"role": "user", "content": "ok"}]
            )
            assert resp.choices[0].message.content == f"reply to {OPENAI_MODEL}: ok"

    asyncio.run(go())
    assert server.connections_opened == 1


@pytest.mark.parametrize("stream", [False, True])
def test_anthropic_error_statuses_raise_sdk_exceptions(server, stream):
    async def go():
        async with claude(server) as client:
            for status, _, exc_class in ERROR_CASES:
                server.queue_reply(f"scripted {status}", status=status, headers={"Retry-After": "0"})
                with pytest.raises(exc_class) as err:
                    await client.messages.create(
                        model=CLAUDE_MODEL, max_tokens=8, messages=[{"role": "user", "content": "q"}], stream=stream
                    )
                exc = err.value
                assert exc.status_code == status
                assert exc.body["type"] == "error"
                assert exc.body["error"]["message"] == f"scripted {status}"
                assert exc.response.headers["retry-after"] == "0"
                if status == 429:
                    assert exc.body["error"]["type"] == "rate_limit_error"
            # 529 is Anthropic's "overloaded": its own subclass of InternalServerError
            server.queue_reply("overloaded", status=529)
            with pytest.raises(anthropic.InternalServerError) as err:
                await client.messages.create(
                    model=CLAUDE_MODEL, max_tokens=8, messages=[{"role": "user", "content": "q"}]
                )
            assert err.value.body["error"]["type"] == "overloaded_error"

    asyncio.run(go())
    assert server.connections_opened == 1


def test_missing_auth_unknown_path_bad_body(server):
    body = {"model": OPENAI_MODEL, "messages": [{"role": "user", "content": "hi"}]}
    status, _, payload = raw_request(server, "POST", "/v1/chat/completions", body)
    assert status == 401 and payload["error"]["code"] == "invalid_api_key"
    status, _, payload = raw_request(server, "POST", "/v1/messages", body)
    assert status == 401
    assert payload == {"type": "error", "error": payload["error"], "request_id": payload["request_id"]}
    assert payload["error"]["type"] == "authentication_error"

    status, _, payload = raw_request(server, "POST", "/v1/nowhere", body, {"Authorization": "Bearer k"})
    assert status == 404 and payload["error"]["message"] == "Invalid URL (POST /v1/nowhere)"
    assert payload["error"]["type"] == "invalid_request_error"

    status, _, payload = raw_request(server, "POST", "/v1/messages", {"messages": []}, {"x-api-key": "k"})
    assert status == 400 and payload["error"]["type"] == "invalid_request_error"

    async def sdk_unknown_path():
        async with oai(server) as client:
            await client.post("/nowhere", cast_to=object, body={})

    with pytest.raises(openai.NotFoundError):
        asyncio.run(sdk_unknown_path())
    assert [r.path for r in server.requests][-1] == "/v1/nowhere"
    assert len(server.requests) == 5  # errors are recorded too


def test_error_rule_every_third_request(server):
    server.set_error_rule(lambda i, req: (429, "slow down", {"Retry-After": "0"}) if i % 3 == 2 else None)
    server.queue_reply("first")

    async def go():
        outcomes = []
        async with oai(server) as client:
            for _ in range(6):
                try:
                    resp = await client.chat.completions.create(
                        model=OPENAI_MODEL, messages=[{"role": "user", "content": "q"}]
                    )
                    outcomes.append(resp.choices[0].message.content)
                except openai.RateLimitError as err:
                    outcomes.append(f"429 {err.response.headers['retry-after']}")
        return outcomes

    outcomes = asyncio.run(go())
    default = f"reply to {OPENAI_MODEL}: q"
    assert outcomes == ["first", default, "429 0", default, default, "429 0"]


def test_sdk_retries_after_scripted_429():
    # Note: the SDKs treat "Retry-After: 0" as "no hint" and back off ~0.5 s; retry-after-ms is honoured.
    with FakeLLMServer() as srv:
        srv.queue_reply("busy", status=429, headers={"retry-after-ms": "1"})
        srv.queue_reply("after retry")

        async def go():
            async with openai.AsyncOpenAI(api_key="k", base_url=srv.base_url, max_retries=1, timeout=5) as client:
                return await client.chat.completions.create(
                    model=OPENAI_MODEL, messages=[{"role": "user", "content": "q"}]
                )

        started = time.monotonic()
        assert asyncio.run(go()).choices[0].message.content == "after retry"
        assert time.monotonic() - started < 0.4
        assert len(srv.requests) == 2


# ---------------------------------------------------------------- scripting


def test_matched_replies(server):
    server.queue_reply("generic")
    server.queue_reply("for the needle", match="needle")
    server.queue_reply("for the café", match="café")  # non-ASCII: matched on the decoded text too

    first = asyncio.run(oai_chat(server, "nothing special"))
    second = asyncio.run(claude_msg(server, "find the needle please"))
    third = asyncio.run(oai_chat(server, "au café"))
    fourth = asyncio.run(oai_chat(server, "needle again"))
    assert first.choices[0].message.content == "generic"
    assert second.content[0].text == "for the needle"
    assert third.choices[0].message.content == "for the café"
    assert fourth.choices[0].message.content == f"reply to {OPENAI_MODEL}: needle again"
    assert server.queued == []


def test_unmatched_entries_stay_queued(server):
    server.queue_reply("only for zebra", match="zebra")
    assert asyncio.run(oai_chat(server, "horse")).choices[0].message.content.startswith("reply to")
    assert [r.match for r in server.queued] == ["zebra"]
    assert asyncio.run(oai_chat(server, "zebra")).choices[0].message.content == "only for zebra"


def test_requests_recorded_in_order_and_reset(server):
    asyncio.run(oai_chat(server, "one"))
    asyncio.run(claude_msg(server, "two", stream=True))
    asyncio.run(oai_chat(server, "three"))
    reqs = server.requests
    assert [r.last_user_text for r in reqs] == ["one", "two", "three"]
    assert [r.stream for r in reqs] == [False, True, False]
    assert all(isinstance(r, RecordedRequest) for r in reqs)
    assert reqs[0].received_at <= reqs[1].received_at <= reqs[2].received_at
    assert all(k == k.lower() for r in reqs for k in r.headers)
    assert len(server.in_flight_log) == 3 and all(end >= start for start, end, _ in server.in_flight_log)
    with pytest.raises(dataclasses.FrozenInstanceError):
        reqs[0].path = "/changed"  # frozen

    server.queue_reply("left over")
    server.set_error_rule(lambda i, r: (500, "boom", {}))
    server.reset()
    assert server.requests == [] and server.in_flight_log == [] and server.queued == []
    assert asyncio.run(oai_chat(server, "four")).choices[0].message.content == f"reply to {OPENAI_MODEL}: four"


def test_models_list_for_both_sdks(server):
    async def go():
        async with oai(server) as client:
            oai_models = [m.id async for m in client.models.list()]
        async with claude(server) as client:
            claude_models = [m.id async for m in client.models.list()]
        return oai_models, claude_models

    oai_models, claude_models = asyncio.run(go())
    assert oai_models and claude_models and oai_models != claude_models


# ---------------------------------------------------------------- concurrency


def test_two_concurrent_requests_overlap():
    with FakeLLMServer(latency_s=0.3) as srv:

        async def go():
            async with oai(srv) as client, claude(srv) as claude_client:
                await client.models.list()  # warm up the client outside the timed part
                await claude_client.models.list()
                await asyncio.gather(
                    client.chat.completions.create(model=OPENAI_MODEL, messages=[{"role": "user", "content": "a"}]),
                    claude_client.messages.create(
                        model=CLAUDE_MODEL, max_tokens=8, messages=[{"role": "user", "content": "b"}], stream=True
                    ),
                )

        asyncio.run(go())  # no wall-clock bound: the handled intervals below show the overlap
        assert srv.max_in_flight == 2
        (s1, e1, _), (s2, e2, _) = [entry for entry in srv.in_flight_log if "models" not in entry[2]]
        assert max(s1, s2) < min(e1, e2)  # the two handled intervals overlap
        assert min(e1 - s1, e2 - s2) >= 0.3


def test_per_reply_latency_override():
    with FakeLLMServer(latency_s=0.0) as srv:
        srv.queue_reply("slow", latency_s=0.1)
        started = time.monotonic()
        assert asyncio.run(oai_chat(srv)).choices[0].message.content == "slow"
        assert time.monotonic() - started >= 0.1


async def _raw_chat(port: int, i: int) -> tuple[int, dict]:
    """One keep-alive HTTP/1.1 request on its own connection (the SDKs cost ~3 ms of CPU per call)."""
    body = json.dumps({"model": OPENAI_MODEL, "messages": [{"role": "user", "content": f"n{i}"}]}).encode()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer k\r\n"
            b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
        )
        await writer.drain()
        head = await reader.readuntil(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        length = next(
            int(line.split(b":", 1)[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")
        )
        return status, json.loads(await reader.readexactly(length))
    finally:
        writer.close()


def test_two_hundred_concurrent_connections():
    n = 200
    # 1 s of latency, so that 200 connections overlap even when a busy machine is slow to accept them.
    with FakeLLMServer(latency_s=1.0) as srv:

        async def go():
            started = time.monotonic()
            results = await asyncio.gather(*(_raw_chat(srv.port, i) for i in range(n)))
            return results, time.monotonic() - started

        results, wall = asyncio.run(go())
        assert all(status == 200 for status, _ in results)
        assert sorted(p["choices"][0]["message"]["content"] for _, p in results) == sorted(
            f"reply to {OPENAI_MODEL}: n{i}" for i in range(n)
        )
        assert len(srv.requests) == n
        assert srv.max_in_flight >= n // 2
        assert wall < 2.0  # ~0.45 s here; the bound only catches serialised handling


def test_stop_does_not_hang_on_open_keepalive_or_sleeping_requests():
    srv = FakeLLMServer(latency_s=10).start()
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=5)
    conn.request(
        "POST",
        "/v1/chat/completions",
        body=json.dumps({"model": "m", "messages": []}),
        headers={"Authorization": "Bearer k", "Content-Type": "application/json"},
    )
    time.sleep(0.05)  # the handler is now sleeping for its 10 s latency
    started = time.monotonic()
    srv.stop()
    assert time.monotonic() - started < 1.0
    conn.close()
    srv.stop()  # idempotent


# ---------------------------------------------------------------- tool calls

ADD = {"type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}}, "required": ["a", "b"]}
OAI_TOOLS = [{"type": "function", "function": {"name": "add", "description": "Add.", "parameters": ADD}},
             {"type": "function", "function": {"name": "weather__forecast", "parameters": {"type": "object"}}}]
CLAUDE_TOOLS = [{"name": "add", "description": "Add.", "input_schema": ADD},
                {"name": "weather__forecast", "input_schema": {"type": "object"}}]
TWO_CALLS = [("add", {"a": 17, "b": 25}), ("weather__forecast", {"city": "Paris"}, "call_fixed_id")]


def test_openai_tool_calls_non_streamed(server):
    server.queue_tool_calls(TWO_CALLS)
    resp = asyncio.run(oai_chat(server, "add and forecast", tools=OAI_TOOLS))
    choice = resp.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    calls = choice.message.tool_calls
    assert [(c.type, c.function.name, json.loads(c.function.arguments)) for c in calls] == [
        ("function", "add", {"a": 17, "b": 25}), ("function", "weather__forecast", {"city": "Paris"})]
    assert calls[0].id.startswith("call_") and calls[1].id == "call_fixed_id"
    assert server.tool_call_ids == [calls[0].id, "call_fixed_id"]
    [req] = server.requests
    assert req.tools == OAI_TOOLS and req.tool_names == ["add", "weather__forecast"]


def test_openai_tool_calls_streamed_in_pieces(server):
    server.queue_tool_calls(TWO_CALLS, text="Let me check.", usage=(10, 20))

    async def go():
        async with oai(server) as client:
            stream = await client.chat.completions.create(
                model=OPENAI_MODEL, messages=[{"role": "user", "content": "q"}], tools=OAI_TOOLS, stream=True,
                stream_options={"include_usage": True})
            return [chunk async for chunk in stream]

    chunks = asyncio.run(go())
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    pieces: dict[int, list] = {}
    for chunk in chunks:
        for choice in chunk.choices:
            for delta in choice.delta.tool_calls or []:
                pieces.setdefault(delta.index, []).append(delta)
    assert text == "Let me check."
    assert sorted(pieces) == [0, 1]
    for index, (name, arguments, *_) in enumerate(TWO_CALLS):
        first, *rest = pieces[index]
        assert first.id and first.function.name == name and first.type == "function"
        assert rest and all(d.id is None and d.function.name is None for d in rest)  # arguments in several pieces
        assert json.loads("".join(d.function.arguments or "" for d in pieces[index])) == arguments
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "tool_calls"
    assert chunks[-1].usage.completion_tokens == 20


def test_anthropic_tool_use_non_streamed_and_streamed(server):
    server.queue_tool_calls(TWO_CALLS, text="Checking.")
    server.queue_tool_calls(TWO_CALLS)

    async def go():
        async with claude(server) as client:
            plain = await client.messages.create(model=CLAUDE_MODEL, max_tokens=64, tools=CLAUDE_TOOLS,
                                                 messages=[{"role": "user", "content": "q"}])
            async with client.messages.stream(model=CLAUDE_MODEL, max_tokens=64, tools=CLAUDE_TOOLS,
                                              messages=[{"role": "user", "content": "q"}]) as stream:
                events = [event async for event in stream]
                streamed = await stream.get_final_message()
            return plain, events, streamed

    plain, events, streamed = asyncio.run(go())
    assert plain.stop_reason == "tool_use" and [b.type for b in plain.content] == ["text", "tool_use", "tool_use"]
    assert plain.content[0].text == "Checking."
    uses = plain.content[1:]
    assert [(b.name, b.input) for b in uses] == [(n, a) for n, a, *_ in TWO_CALLS]
    assert uses[0].id.startswith("toolu_01") and uses[1].id == "call_fixed_id"
    # streamed: the SDK rebuilds each input from its input_json_delta pieces
    assert streamed.stop_reason == "tool_use" and [b.type for b in streamed.content] == ["tool_use", "tool_use"]
    assert [(b.name, b.input) for b in streamed.content] == [(n, a) for n, a, *_ in TWO_CALLS]
    assert sum(1 for e in events if e.type == "input_json") > 2
    assert server.tool_call_ids == [uses[0].id, "call_fixed_id", streamed.content[0].id, "call_fixed_id"]
    assert server.requests[0].tool_names == ["add", "weather__forecast"]


def test_tool_results_and_sent_calls_are_recorded(server):
    oai_messages = [
        {"role": "user", "content": "q"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "add", "arguments": '{"a": 1, "b": 2}'}},
            {"id": "c2", "type": "function", "function": {"name": "add", "arguments": "not json"}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "3"},
        {"role": "tool", "tool_call_id": "c2", "content": [{"type": "text", "text": "bad arguments"}]},
    ]
    claude_messages = [
        {"role": "user", "content": "q"},
        {"role": "assistant", "content": [{"type": "text", "text": "Adding."},
                                          {"type": "tool_use", "id": "t1", "name": "add", "input": {"a": 1, "b": 2}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "3", "is_error": False},
                                     {"type": "text", "text": "go on"}]},
    ]

    async def go():
        async with oai(server) as client:
            await client.chat.completions.create(model=OPENAI_MODEL, messages=oai_messages, tools=OAI_TOOLS)
        async with claude(server) as client:
            await client.messages.create(model=CLAUDE_MODEL, max_tokens=8, messages=claude_messages,
                                         tools=CLAUDE_TOOLS)

    asyncio.run(go())
    first, second = server.requests
    assert [(r.tool_call_id, r.content, r.is_error) for r in first.tool_results] == [
        ("c1", "3", None), ("c2", "bad arguments", None)]
    assert [(c.id, c.name, c.arguments) for c in first.sent_tool_calls] == [
        ("c1", "add", {"a": 1, "b": 2}), ("c2", "add", "not json")]
    assert [(r.tool_call_id, r.content, r.is_error) for r in second.tool_results] == [("t1", "3", False)]
    assert [(c.id, c.name, c.arguments) for c in second.sent_tool_calls] == [("t1", "add", {"a": 1, "b": 2})]


CALL = {"id": "c1", "type": "function", "function": {"name": "add", "arguments": "{}"}}
OPENAI_BAD = [
    ([{"role": "tool", "tool_call_id": "c1", "content": "3"}], "must be a response to a preceeding message"),
    ([{"role": "assistant", "content": None, "tool_calls": [CALL]}, {"role": "user", "content": "next"}],
     "did not have response messages: c1"),
    ([{"role": "assistant", "content": None, "tool_calls": [CALL]}], "did not have response messages: c1"),
    ([{"role": "assistant", "content": None, "tool_calls": [{**CALL, "function": {"name": "add", "arguments": {}}}]},
      {"role": "tool", "tool_call_id": "c1", "content": "3"}], "expected a string, but got an object"),
]
CLAUDE_BAD = [
    ([{"role": "tool", "content": "3"}], "messages.1.role"),
    ([{"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "add", "input": {}}]},
      {"role": "user", "content": "no result"}], "`tool_use` ids were found without `tool_result` blocks"),
    ([{"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t9", "content": "3"}]}],
     "unexpected `tool_use_id`"),
]


@pytest.mark.parametrize(("messages", "message"), OPENAI_BAD)
def test_openai_rejects_a_malformed_tool_conversation(server, messages, message):
    async def go():
        async with oai(server) as client:
            await client.chat.completions.create(model=OPENAI_MODEL, messages=[{"role": "user", "content": "q"},
                                                                              *messages])

    with pytest.raises(openai.BadRequestError, match=message):
        asyncio.run(go())


@pytest.mark.parametrize(("messages", "message"), CLAUDE_BAD)
def test_anthropic_rejects_a_malformed_tool_conversation(server, messages, message):
    async def go():
        async with claude(server) as client:
            await client.messages.create(model=CLAUDE_MODEL, max_tokens=8,
                                         messages=[{"role": "user", "content": "q"}, *messages])

    with pytest.raises(anthropic.BadRequestError, match=message):
        asyncio.run(go())


def test_malformed_tool_definitions_are_rejected(server):
    with pytest.raises(openai.BadRequestError, match=r"tools\[0\].function"):
        asyncio.run(oai_chat(server, tools=[{"name": "add", "parameters": ADD}]))  # not wrapped in a function
    with pytest.raises(openai.BadRequestError, match="does not match pattern"):
        asyncio.run(oai_chat(server, tools=[{"type": "function", "function": {"name": "weather.forecast"}}]))
    with pytest.raises(anthropic.BadRequestError, match="input_schema: Field required"):
        asyncio.run(claude_msg(server, tools=[{"name": "add", "parameters": ADD}]))


def test_string_arguments(server):
    server.queue_tool_calls([("add", "{not json")])
    resp = asyncio.run(oai_chat(server, tools=OAI_TOOLS))
    assert resp.choices[0].message.tool_calls[0].function.arguments == "{not json"  # verbatim, for bad-JSON tests
    server.queue_tool_calls([("add", '{"a": 1, "b": 2}')])
    assert asyncio.run(claude_msg(server, tools=CLAUDE_TOOLS)).content[0].input == {"a": 1, "b": 2}
    server.queue_tool_calls([("add", "[1, 2]")])
    with pytest.raises(anthropic.InternalServerError, match="must be a JSON object"):
        asyncio.run(claude_msg(server, tools=CLAUDE_TOOLS))


def test_any_tool_choice_answers_text_as_the_structured_output_tool(server):
    answer_tool = {"name": "structured_output", "input_schema": {"type": "object"}}
    server.queue_reply('{"title": "Bees"}')
    server.queue_reply("I refuse")
    msg = asyncio.run(claude_msg(server, tools=[*CLAUDE_TOOLS, answer_tool], tool_choice={"type": "any"}))
    assert [(b.type, b.name, b.input) for b in msg.content] == [("tool_use", "structured_output", {"title": "Bees"})]
    assert msg.stop_reason == "tool_use" and server.requests[0].forced_tool == "structured_output"
    refused = asyncio.run(claude_msg(server, tools=[*CLAUDE_TOOLS, answer_tool], tool_choice={"type": "any"}))
    assert refused.content[0].text == "I refuse" and refused.stop_reason == "end_turn"
    asyncio.run(claude_msg(server, tools=CLAUDE_TOOLS, tool_choice={"type": "any"}))
    assert server.requests[-1].forced_tool is None  # two tools, none the answer tool: the model would choose


def test_tool_calls_are_matched_like_replies_and_reset(server):
    server.queue_tool_calls([("add", {"a": 1, "b": 2})], match="needle")
    assert asyncio.run(oai_chat(server, "hay")).choices[0].finish_reason == "stop"
    assert asyncio.run(oai_chat(server, "a needle", tools=OAI_TOOLS)).choices[0].finish_reason == "tool_calls"
    assert len(server.tool_call_ids) == 1
    server.reset()
    assert server.tool_call_ids == []
    with pytest.raises(ValueError):
        server.queue_tool_calls([])
