"""A fake LLM HTTP server for tests: OpenAI Chat Completions and Anthropic Messages on 127.0.0.1.

Standard library only (``http.server.ThreadingHTTPServer``, one thread per connection), so it can
be imported by any test without extra dependencies. It never touches the network beyond the
loopback interface: it binds ``127.0.0.1`` on a port the OS picks.

Wire formats (what the real APIs send, close enough for the official SDKs to parse):

* ``POST /v1/chat/completions`` (also ``/chat/completions``): OpenAI Chat Completions. Non-streamed
  ``chat.completion`` objects, or with ``"stream": true`` Server-Sent Events of
  ``chat.completion.chunk`` objects (a role chunk, one chunk per word, a ``finish_reason`` chunk,
  a usage chunk with ``choices: []`` when ``stream_options.include_usage`` is true), then
  ``data: [DONE]``. Scripted tool calls come as ``message.tool_calls`` (``content`` null unless
  text was scripted too), or streamed as ``delta.tool_calls`` after any text: per call one delta
  with ``index``, ``id``, ``type``, ``function.name`` and empty ``arguments``, then the arguments
  text in pieces of a few characters carrying only the ``index``; ``finish_reason`` ``"tool_calls"``.
* ``POST /v1/messages`` (also ``/messages``): Anthropic Messages. Non-streamed ``message`` objects,
  or with ``"stream": true`` the event sequence ``message_start``, ``content_block_start``,
  ``ping``, ``content_block_delta`` (``text_delta``, one per word), ``content_block_stop``,
  ``message_delta`` (``stop_reason`` and ``usage.output_tokens``), ``message_stop``. Scripted tool
  calls are ``tool_use`` content blocks (after a text block when text was scripted too),
  ``stop_reason`` ``"tool_use"``; streamed, each is a ``content_block_start`` with an empty
  ``input``, ``input_json_delta`` pieces of its JSON, and a ``content_block_stop``.
* ``GET /v1/models`` (also ``/models``): a small model list, in Anthropic's shape when the request
  carries an ``anthropic-version`` header, else in OpenAI's.
* Anything else: 404 in OpenAI's error format. A known path with the wrong method: 405.

Errors use each API's JSON shape, so the SDKs raise their own exception classes
(``AuthenticationError`` for 401, ``NotFoundError`` for 404, ``RateLimitError`` for 429,
``InternalServerError`` or a subclass of it for 5xx):

* OpenAI: ``{"error": {"message", "type", "param", "code"}}``
* Anthropic: ``{"type": "error", "error": {"type", "message"}, "request_id"}``

A request that has neither an ``authorization`` nor an ``x-api-key`` header gets a 401 (note that
the anthropic SDK sends its api_key as ``Authorization: Bearer``, not as ``x-api-key``). A body
that is not a JSON object, or lacks ``model`` (a string) or ``messages`` (a list), gets a 400.

Tool definitions and tool conversations get the checks the real APIs make, answered with a 400 and
their message: OpenAI ``tools`` entries must be ``{type: function, function: {name, ...}}`` with a
name matching ``^[a-zA-Z0-9_-]{1,64}$``; an assistant message's ``tool_calls`` need an ``id`` and
``function.arguments`` as a string; every ``role: tool`` message must answer (by ``tool_call_id``)
a call of the assistant message just before it, and every such call must be answered before the
next other message. Anthropic ``tools`` need a ``name`` (same pattern) and an ``input_schema``
object; roles are only ``user`` and ``assistant``; a ``tool_use`` block's ``input`` is an object;
every ``tool_use`` id of an assistant message must have a ``tool_result`` block in the next (user)
message, and a ``tool_result`` must name a ``tool_use`` of the message just before.

HTTP/1.1 keep-alive works: every non-streamed response has a Content-Length, and streams use
chunked transfer encoding ending with the zero-length chunk (or ``Connection: close`` for an
HTTP/1.0 client), so both SDKs read a stream to its end and reuse the connection.

Public API
----------

``FakeLLMServer(*, latency_s=0.0, default_reply=None)``
    ``start() -> FakeLLMServer``: bind 127.0.0.1:0 and serve in a daemon thread.
    ``stop()``: stop serving, close every open connection, wake sleeping handlers (idempotent).
    ``with FakeLLMServer() as server: ...`` starts and stops it.

    ``base_url``: ``"http://127.0.0.1:PORT/v1"``, the ``base_url`` for ``openai.OpenAI``.
    ``root_url``: ``"http://127.0.0.1:PORT"``, the ``base_url`` for ``anthropic.Anthropic`` (that SDK
    appends ``/v1/messages`` itself). ``port``: the bound port.

    ``requests: list[RecordedRequest]``: every request received, in arrival order, including the
    ones answered with an error (401, 404, ...). ``queued``: a copy of the replies still queued.
    ``max_in_flight: int``: the highest number of requests handled at the same time.
    ``in_flight_log: list[tuple[float, float, str]]``: ``(start, end, path)`` per finished request,
    in ``time.monotonic()`` seconds. ``end`` is taken just before the last write of the response
    (the body, or a stream's final chunk), so once a client holds a whole response, its entry is
    in the log and it no longer counts as in flight.
    ``connections_opened: int``: TCP connections accepted so far (to check keep-alive reuse).
    ``tool_call_ids: list[str]``: the id of every tool call the server answered with, in order
    (scripted or generated: OpenAI ``call_...``, Anthropic ``toolu_01...``), forced-tool answers included.
    ``latency_s`` and ``default_reply`` may be changed while the server runs.

    ``queue_reply(text, *, status=200, latency_s=None, headers=None, usage=None, match=None)``
        Append a scripted reply to a FIFO. ``status != 200`` answers with an error in the
        requesting API's format, whose message is ``text``. ``headers`` are extra response headers
        (e.g. ``{"Retry-After": "0"}``), on success and error alike. ``latency_s`` overrides the
        server's latency for this reply. ``usage=(prompt_tokens, completion_tokens)`` overrides the
        computed usage. ``match``: the reply is only used for a request whose body contains that
        substring; it is looked for in the raw JSON text, in the same JSON re-encoded without
        ASCII escapes, and in the plain text of the system prompt and all messages. For each
        chat/messages request, the first queued entry with a matching ``match`` is used; failing
        that, the first queued entry without ``match``; failing that, the default reply. Entries
        whose ``match`` is not found stay queued.

    ``queue_tool_calls(calls, *, text="", latency_s=None, headers=None, usage=None, match=None)``
        Queue a reply that calls tools, in the same FIFO and with the same matching as
        ``queue_reply``. ``calls``: ``(name, arguments)`` or ``(name, arguments, id)`` tuples (or
        ``ScriptedToolCall``s), answered as OpenAI ``tool_calls`` or Anthropic ``tool_use`` blocks
        (see the wire formats above), streamed or not. ``arguments`` is a dict, or a str: OpenAI
        sends it verbatim as the ``arguments`` text (to script malformed JSON); Anthropic's
        ``input`` must be an object, so there it must be a JSON object's text, else the request
        gets a 500 naming the script's mistake. Without an id each call gets a new one. ``text``:
        text the reply carries before its calls. Default usage counts ``text`` and the arguments.

    ``set_error_rule(fn)``: ``fn(request_index, RecordedRequest)`` is called for each
        chat/messages request that passed the auth and body checks, before the reply queue is
        consulted; ``request_index`` is the request's 0-based index in ``requests``. Returning
        ``(status, message, headers)`` (or ``(status, message)``) answers with that error (after
        the server's ``latency_s``) without consuming a queued reply; returning ``None`` goes on
        as usual. ``set_error_rule(None)`` removes the rule.

    ``reset()``: forget recorded requests, the in-flight log and maximum, queued replies, issued
        tool call ids and the error rule (the server keeps running, on the same port).

``RecordedRequest`` (frozen dataclass): ``path`` (as sent, with any query string), ``headers``
    (lower-cased keys), ``body`` (parsed JSON object; ``{}`` when there was none or it was not a
    JSON object), ``received_at`` (``time.monotonic()``), ``method``, ``raw_body`` (bytes).
    Helpers: ``.model``, ``.messages`` (the ``messages`` list of either API), ``.system`` (the
    Anthropic ``system`` field, or the OpenAI system/developer message content, as text; else
    ``None``), ``.stream`` (bool), ``.api`` (``"openai"``, ``"anthropic"`` or ``None``),
    ``.last_user_text`` (text of the last user message, ``""`` if none), ``.response_format``,
    ``.tools`` (the offered tool definitions as sent, ``[]`` without), ``.tool_names``,
    ``.tool_choice``, ``.forced_tool`` (below), ``.tool_results`` (``ToolResult(tool_call_id,
    content, is_error, name)`` per OpenAI ``role: tool`` message or Anthropic ``tool_result`` block,
    content as text; ``is_error`` None when absent) and ``.sent_tool_calls`` (``SentToolCall(id,
    name, arguments)`` per call in the request's assistant messages: OpenAI ``arguments`` parsed from
    its JSON text, or the raw text; Anthropic ``input``).

Replies when nothing is queued: ``default_reply`` if set, else
``"reply to <model>: <first 60 chars of the last user message>"``. Default usage: prompt tokens =
characters of the system prompt and all message contents // 4, completion tokens =
``len(reply) // 4``, each at least 1. ``max_tokens`` is not enforced. The finish reason is
``"stop"`` / ``"end_turn"``, except for replies queued with ``queue_tool_calls`` (above) and
Anthropic's forced tools:

* OpenAI ``response_format`` (``json_schema``) is recorded with the request (``.response_format``)
  and answered with the scripted text as the message content, streamed or not.
* Anthropic: a request that makes the model call a tool (``.forced_tool``: ``tool_choice``
  ``{"type": "tool", "name"}`` naming one of ``tools``; or ``{"type": "any"}`` with a tool named
  ``structured_output`` offered, orchestrai's answer tool, or with a single tool) is answered,
  for a text reply, with one ``tool_use`` block for that tool whose ``input`` is the scripted text
  parsed as JSON, ``stop_reason`` ``"tool_use"``, streamed or not. Scripted text that is not a
  JSON object is sent as a text block instead (``end_turn``), as a model that refuses would.

Notes on the SDKs (openai 3.x on httpx2, anthropic 2.x)
-------------------------------------------------------
* With ``max_retries > 0`` both SDKs retry 408/409/429/5xx. They ignore ``Retry-After: 0`` (only a
  delay > 0 counts) and back off ~0.5 s instead; send ``{"retry-after-ms": "1"}`` for a fast retry,
  or ``{"x-should-retry": "false"}`` to forbid one.
* The anthropic SDK maps 503 to ``ServiceUnavailableError``, 504 to ``GatewayTimeoutError`` and
  529 to ``OverloadedError``, all subclasses of ``InternalServerError``.
* The async openai client drains a stream after ``[DONE]`` and keeps the connection; the sync one
  closes it, so a sync client opens a new connection after each stream (harmless).
"""

from __future__ import annotations

import contextlib
import json
import random
import re
import socket
import string
import sys
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

from fake_llm_tools import (
    ScriptedToolCall,
    SentToolCall,
    ToolResult,
    anthropic_blocks,
    anthropic_tool_use_events,
    arguments_text,
    offered_tool_names,
    openai_tool_calls,
    openai_tool_deltas,
    scripted_calls,
    sent_tool_calls,
    tool_problem,
    tool_results,
)

__all__ = ["FakeLLMServer", "RecordedRequest", "ScriptedReply", "ScriptedToolCall", "SentToolCall", "ToolResult"]

ANSWER_TOOL = "structured_output"  # orchestrai's tool whose input is a structured answer

_OPENAI_CHAT_PATHS = ("/v1/chat/completions", "/chat/completions")
_ANTHROPIC_MESSAGES_PATHS = ("/v1/messages", "/messages")
_MODELS_PATHS = ("/v1/models", "/models")

_REASONS = {
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    402: "Payment Required",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
    409: "Conflict",
    413: "Payload Too Large",
    422: "Unprocessable Entity",
    429: "Too Many Requests",
    500: "Internal Server Error",
    501: "Not Implemented",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
    529: "Overloaded",
}

_OPENAI_ERROR_TYPES = {
    400: ("invalid_request_error", None),
    401: ("invalid_request_error", "invalid_api_key"),
    403: ("invalid_request_error", "unsupported_country_region_territory"),
    404: ("invalid_request_error", "model_not_found"),
    409: ("invalid_request_error", None),
    422: ("invalid_request_error", None),
    429: ("requests", "rate_limit_exceeded"),
}

_ANTHROPIC_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    504: "timeout_error",
    529: "overloaded_error",
}

_ALNUM = string.ascii_letters + string.digits

ErrorRule = Callable[[int, "RecordedRequest"], Any]


_RNG = random.Random()


def _rand(n: int) -> str:
    return "".join(_RNG.choices(_ALNUM, k=n))


def _text_of(content: Any) -> str:
    """Plain text of a message content: a string, or a list of parts with ``text`` fields."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for part in content:
            if isinstance(part, str):
                parts.append(part)
            elif isinstance(part, dict) and isinstance(part.get("text"), str):
                parts.append(part["text"])
        return "".join(parts)
    if isinstance(content, dict) and isinstance(content.get("text"), str):
        return content["text"]
    return ""


def _split_words(text: str) -> list[str]:
    """Split into word-sized pieces that join back to exactly ``text``."""
    return [piece for piece in re.split(r"(?<=\s)(?=\S)", text) if piece]


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the server received it."""

    path: str
    headers: dict[str, str]
    body: dict
    received_at: float
    method: str = "POST"
    raw_body: bytes = field(default=b"", repr=False)

    @property
    def api(self) -> str | None:
        route = urlsplit(self.path).path.rstrip("/")
        if route in _OPENAI_CHAT_PATHS:
            return "openai"
        if route in _ANTHROPIC_MESSAGES_PATHS:
            return "anthropic"
        return None

    @property
    def model(self) -> str | None:
        model = self.body.get("model")
        return model if isinstance(model, str) else None

    @property
    def messages(self) -> list:
        messages = self.body.get("messages")
        return messages if isinstance(messages, list) else []

    @property
    def system(self) -> str | None:
        if "system" in self.body and self.body["system"] is not None:
            return _text_of(self.body["system"])
        texts = [
            _text_of(m.get("content"))
            for m in self.messages
            if isinstance(m, dict) and m.get("role") in ("system", "developer")
        ]
        return "\n".join(texts) if texts else None

    @property
    def stream(self) -> bool:
        return bool(self.body.get("stream", False))

    @property
    def response_format(self) -> dict | None:
        value = self.body.get("response_format")
        return value if isinstance(value, dict) else None

    @property
    def tools(self) -> list:
        """The tool definitions the request offered (``tools``), as sent; ``[]`` without any."""
        tools = self.body.get("tools")
        return tools if isinstance(tools, list) else []

    @property
    def tool_names(self) -> list[str]:
        """The names of the offered tools (OpenAI ``function.name``, Anthropic ``name``)."""
        return offered_tool_names(self.api, self.tools)

    @property
    def tool_choice(self) -> Any:
        return self.body.get("tool_choice")

    @property
    def tool_results(self) -> list[ToolResult]:
        """The tool results the request carried: OpenAI ``role: tool`` messages, Anthropic ``tool_result`` blocks."""
        return tool_results(self.api, self.messages)

    @property
    def sent_tool_calls(self) -> list[SentToolCall]:
        """The tool calls the request's assistant messages carried (a model's earlier calls, sent back)."""
        return sent_tool_calls(self.api, self.messages)

    @property
    def forced_tool(self) -> str | None:
        """The tool an Anthropic request makes the model call: ``tool_choice: {type: tool, name}`` naming one
        of ``tools``; or ``{type: any}`` (some tool must be called) with the ``structured_output`` tool
        offered, or with only one tool offered."""
        choice = self.body.get("tool_choice")
        names = set(self.tool_names)
        if not isinstance(choice, dict):
            return None
        if choice.get("type") == "tool":
            return choice.get("name") if choice.get("name") in names else None
        if choice.get("type") == "any":
            if ANSWER_TOOL in names:
                return ANSWER_TOOL
            return next(iter(names)) if len(names) == 1 else None
        return None

    @property
    def last_user_text(self) -> str:
        for message in reversed(self.messages):
            if isinstance(message, dict) and message.get("role") == "user":
                return _text_of(message.get("content"))
        return ""

    def prompt_chars(self) -> int:
        """Characters of the system prompt (Anthropic) and every message content."""
        total = sum(len(_text_of(m.get("content"))) for m in self.messages if isinstance(m, dict))
        if self.body.get("system") is not None:
            total += len(_text_of(self.body["system"]))
        return total


@dataclass
class ScriptedReply:
    """An entry of the reply queue (see ``FakeLLMServer.queue_reply``)."""

    text: str
    status: int = 200
    latency_s: float | None = None
    headers: dict[str, str] = field(default_factory=dict)
    usage: tuple[int, int] | None = None
    match: str | None = None
    tool_calls: tuple[ScriptedToolCall, ...] = ()  # non-empty: answered as these tool calls, with `text` before


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # FakeLLMServer.stop closes the connections and joins the threads itself
    request_queue_size = 1024
    allow_reuse_address = True

    fake: FakeLLMServer

    def handle_error(self, request: Any, client_address: Any) -> None:
        exc = sys.exc_info()[1]
        if isinstance(exc, (ConnectionError, TimeoutError, OSError)):
            return  # a client that went away, or stop() closing the socket
        super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "fake-llm/1.0"
    sys_version = ""
    disable_nagle_algorithm = True
    server: _Server
    mark_done: Callable[[], None] = staticmethod(lambda: None)

    def setup(self) -> None:
        super().setup()
        self.server.fake._register_connection(self.connection)

    def finish(self) -> None:
        try:
            super().finish()
        except OSError:
            pass
        finally:
            self.server.fake._unregister_connection(self.connection)

    def version_string(self) -> str:
        return self.server_version

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - signature of the base class
        pass

    def _dispatch(self) -> None:
        try:
            self.server.fake._handle(self)
        except OSError:
            self.close_connection = True

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = _dispatch


class FakeLLMServer:
    """A local fake of the OpenAI and Anthropic HTTP APIs; see the module docstring."""

    def __init__(self, *, latency_s: float = 0.0, default_reply: str | None = None) -> None:
        self.latency_s = latency_s
        self.default_reply = default_reply
        self.requests: list[RecordedRequest] = []
        self.max_in_flight = 0
        self.in_flight_log: list[tuple[float, float, str]] = []
        self.connections_opened = 0
        self.tool_call_ids: list[str] = []
        self._in_flight = 0
        self._queue: list[ScriptedReply] = []
        self._error_rule: ErrorRule | None = None
        self._lock = threading.Lock()
        self._connections: dict[socket.socket, threading.Thread] = {}
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> FakeLLMServer:
        if self._httpd is not None:
            raise RuntimeError("FakeLLMServer is already running")
        self._stopping = threading.Event()
        httpd = _Server(("127.0.0.1", 0), _Handler)
        httpd.fake = self
        self._httpd = httpd
        self._thread = threading.Thread(
            target=httpd.serve_forever, kwargs={"poll_interval": 0.01}, name="fake-llm-server", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        httpd, thread = self._httpd, self._thread
        if httpd is None:
            return
        self._stopping.set()  # wakes handlers sleeping for latency
        httpd.shutdown()
        httpd.server_close()
        if thread is not None:
            thread.join(timeout=5)
        with self._lock:
            connections = dict(self._connections)
        for conn in connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        deadline = time.monotonic() + 2.0
        for handler_thread in connections.values():
            handler_thread.join(timeout=max(0.0, deadline - time.monotonic()))
        self._httpd = None
        self._thread = None

    def __enter__(self) -> FakeLLMServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._httpd is None:
            raise RuntimeError("FakeLLMServer is not running; call start() first")
        return self._httpd.server_address[1]

    @property
    def root_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        return f"{self.root_url}/v1"

    # ------------------------------------------------------------------ scripting

    def queue_reply(
        self,
        text: str,
        *,
        status: int = 200,
        latency_s: float | None = None,
        headers: dict | None = None,
        usage: tuple[int, int] | None = None,
        match: str | None = None,
    ) -> None:
        self._enqueue(ScriptedReply(text=text, status=int(status), latency_s=latency_s,
                                    headers=_header_strings(headers), usage=usage, match=match))

    def queue_tool_calls(
        self,
        calls: Any,
        *,
        text: str = "",
        latency_s: float | None = None,
        headers: dict | None = None,
        usage: tuple[int, int] | None = None,
        match: str | None = None,
    ) -> None:
        self._enqueue(ScriptedReply(text=text, latency_s=latency_s, headers=_header_strings(headers), usage=usage,
                                    match=match, tool_calls=scripted_calls(calls)))

    def _enqueue(self, reply: ScriptedReply) -> None:
        with self._lock:
            self._queue.append(reply)

    def set_error_rule(self, fn: ErrorRule | None) -> None:
        with self._lock:
            self._error_rule = fn

    def reset(self) -> None:
        with self._lock:
            self.requests.clear()
            self.in_flight_log.clear()
            self.max_in_flight = self._in_flight
            self.tool_call_ids.clear()
            self._queue.clear()
            self._error_rule = None

    @property
    def queued(self) -> list[ScriptedReply]:
        """A copy of the replies still queued."""
        with self._lock:
            return list(self._queue)

    # ------------------------------------------------------------------ connection bookkeeping

    def _register_connection(self, conn: socket.socket) -> None:
        with self._lock:
            self._connections[conn] = threading.current_thread()
            self.connections_opened += 1

    def _unregister_connection(self, conn: socket.socket) -> None:
        with self._lock:
            self._connections.pop(conn, None)

    # ------------------------------------------------------------------ request handling

    def _handle(self, h: _Handler) -> None:
        received_at = time.monotonic()
        raw = self._read_body(h)
        headers: dict[str, str] = {}
        for key, value in h.headers.items():
            key = key.lower()
            headers[key] = f"{headers[key]}, {value}" if key in headers else value
        body: dict = {}
        body_ok = True
        if raw:
            try:
                parsed = json.loads(raw)
            except ValueError:
                parsed = None
            if isinstance(parsed, dict):
                body = parsed
            else:
                body_ok = False
        record = RecordedRequest(
            path=h.path, headers=headers, body=body, received_at=received_at, method=h.command, raw_body=raw
        )
        with self._lock:
            index = len(self.requests)
            self.requests.append(record)
            self._in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self._in_flight)
        done = False

        def mark_done() -> None:
            # Called just before the last write of the response (and again, as a no-op, at the end),
            # so the bookkeeping is complete by the time a client holds the whole response.
            nonlocal done
            if not done:
                done = True
                with self._lock:
                    self._in_flight -= 1
                    self.in_flight_log.append((received_at, time.monotonic(), h.path))

        h.mark_done = mark_done
        try:
            self._respond(h, index, record, body_ok)
        finally:
            mark_done()

    @staticmethod
    def _read_body(h: _Handler) -> bytes:
        if "chunked" in h.headers.get("Transfer-Encoding", "").lower():
            chunks = []
            while True:
                size_line = h.rfile.readline(65537)
                size = int(size_line.split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while h.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    break
                chunks.append(h.rfile.read(size))
                h.rfile.readline(65537)
            return b"".join(chunks)
        length = int(h.headers.get("Content-Length") or 0)
        return h.rfile.read(length) if length > 0 else b""

    def _respond(self, h: _Handler, index: int, record: RecordedRequest, body_ok: bool) -> None:
        route = urlsplit(h.path).path.rstrip("/")
        method = h.command
        if route in _OPENAI_CHAT_PATHS:
            api = "openai"
        elif route in _ANTHROPIC_MESSAGES_PATHS:
            api = "anthropic"
        elif route in _MODELS_PATHS:
            api = "anthropic" if "anthropic-version" in record.headers else "openai"
        else:
            self._send_error(h, "openai", 404, f"Invalid URL ({method} {urlsplit(h.path).path})", code=None)
            return

        if not (record.headers.get("authorization", "").strip() or record.headers.get("x-api-key", "").strip()):
            if api == "anthropic":
                message = "x-api-key header is required"
            else:
                message = (
                    "You didn't provide an API key. You need to provide your API key in an Authorization "
                    "header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY)."
                )
            self._send_error(h, api, 401, message)
            return

        if route in _MODELS_PATHS:
            if method != "GET":
                self._send_error(h, api, 405, f"Method Not Allowed ({method} {route})", code=None)
            else:
                self._send_models(h, api)
            return

        if method != "POST":
            self._send_error(h, api, 405, f"Method Not Allowed ({method} {route})", code=None)
            return

        invalid = self._validation_error(api, record, body_ok)
        if invalid is not None:
            self._send_error(h, api, 400, invalid, code=None)
            return

        with self._lock:
            rule = self._error_rule
        if rule is not None:
            try:
                verdict = rule(index, record)
            except Exception as exc:  # a broken rule should fail the test loudly, not hang it
                traceback.print_exc()
                self._send_error(h, api, 500, f"fake server: error rule raised {exc!r}")
                return
            if verdict is not None:
                status, message, *rest = verdict
                extra = {str(k): str(v) for k, v in (rest[0] or {}).items()} if rest else {}
                if not self._sleep(self.latency_s):
                    h.close_connection = True
                    return
                self._send_error(h, api, int(status), str(message), extra_headers=extra)
                return

        reply = self._take_reply(record)
        latency = self.latency_s
        if reply is not None and reply.latency_s is not None:
            latency = reply.latency_s
        if not self._sleep(latency):
            h.close_connection = True
            return

        if reply is not None and reply.status != 200:
            self._send_error(h, api, reply.status, reply.text, extra_headers=reply.headers)
            return

        if reply is not None:
            text = reply.text
        elif self.default_reply is not None:
            text = self.default_reply
        else:
            text = f"reply to {record.model}: {record.last_user_text[:60]}"
        calls = self._issue_call_ids(api, reply.tool_calls if reply is not None else ())
        if reply is not None and reply.usage is not None:
            prompt_tokens, completion_tokens = (int(n) for n in reply.usage)
        else:
            prompt_tokens = max(1, record.prompt_chars() // 4)
            completion_tokens = max(1, (len(text) + sum(len(arguments_text(c)) for _, c in calls)) // 4)
        extra = reply.headers if reply is not None else {}
        model = record.model or ""

        if api == "openai":
            if record.stream:
                include_usage = bool((record.body.get("stream_options") or {}).get("include_usage"))
                events = self._openai_stream(model, text, prompt_tokens, completion_tokens, include_usage, calls)
                self._send_sse(h, events, extra)
            else:
                completion = self._openai_completion(model, text, prompt_tokens, completion_tokens, calls)
                self._send_json(h, 200, completion, extra)
            return
        try:
            blocks = anthropic_blocks(text, calls) if calls else self._answer_blocks(record, text)
        except ValueError as exc:  # a script Anthropic could not send: fail the test loudly
            self._send_error(h, api, 500, str(exc))
            return
        if record.stream:
            self._send_sse(h, self._anthropic_stream(model, blocks, prompt_tokens, completion_tokens), extra)
        else:
            self._send_json(h, 200, self._anthropic_message(model, blocks, prompt_tokens, completion_tokens), extra)

    def _issue_call_ids(self, api: str, calls: tuple[ScriptedToolCall, ...]) -> list[tuple[str, ScriptedToolCall]]:
        """Each scripted call with its id (its own, or a new one in the API's style), recorded in tool_call_ids."""
        issued = [(c.id or (f"call_{_rand(24)}" if api == "openai" else f"toolu_01{_rand(22)}"), c) for c in calls]
        with self._lock:
            self.tool_call_ids.extend(call_id for call_id, _ in issued)
        return issued

    @staticmethod
    def _validation_error(api: str, record: RecordedRequest, body_ok: bool) -> str | None:
        if not body_ok or not record.raw_body:
            if api == "anthropic":
                return "There was an error parsing the body of your request, which must be a JSON object."
            return "We could not parse the JSON body of your request. The body must be a JSON object."
        if not isinstance(record.body.get("model"), str):
            return "model: Field required" if api == "anthropic" else "you must provide a model parameter"
        if not isinstance(record.body.get("messages"), list):
            return "messages: Field required" if api == "anthropic" else "Missing required parameter: 'messages'."
        return tool_problem(api, record.body)

    def _take_reply(self, record: RecordedRequest) -> ScriptedReply | None:
        with self._lock:
            if not self._queue:
                return None
            haystacks: list[str] | None = None
            for i, reply in enumerate(self._queue):
                if reply.match is None:
                    continue
                if haystacks is None:
                    haystacks = self._match_haystacks(record)
                if any(reply.match in hay for hay in haystacks):
                    return self._queue.pop(i)
            for i, reply in enumerate(self._queue):
                if reply.match is None:
                    return self._queue.pop(i)
            return None

    @staticmethod
    def _match_haystacks(record: RecordedRequest) -> list[str]:
        plain = [_text_of(record.body.get("system"))]
        plain += [_text_of(m.get("content")) for m in record.messages if isinstance(m, dict)]
        return [
            record.raw_body.decode("utf-8", errors="replace"),
            json.dumps(record.body, ensure_ascii=False),
            "\n".join(plain),
        ]

    def _sleep(self, seconds: float) -> bool:
        """Sleep without blocking other requests; False if the server is stopping."""
        if seconds and seconds > 0:
            return not self._stopping.wait(seconds)
        return not self._stopping.is_set()

    # ------------------------------------------------------------------ payloads

    @staticmethod
    def _openai_usage(prompt_tokens: int, completion_tokens: int) -> dict:
        return {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
            "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
            "completion_tokens_details": {
                "reasoning_tokens": 0,
                "audio_tokens": 0,
                "accepted_prediction_tokens": 0,
                "rejected_prediction_tokens": 0,
            },
        }

    def _openai_completion(
        self, model: str, text: str, prompt_tokens: int, completion_tokens: int, calls: list | None = None
    ) -> dict:
        message: dict = {"role": "assistant", "content": text, "refusal": None, "annotations": []}
        if calls:
            message["content"] = text or None  # as OpenAI sends a reply that only calls tools
            message["tool_calls"] = openai_tool_calls(calls)
        return {
            "id": f"chatcmpl-{_rand(29)}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "choices": [
                {
                    "index": 0,
                    "message": message,
                    "logprobs": None,
                    "finish_reason": "tool_calls" if calls else "stop",
                }
            ],
            "usage": self._openai_usage(prompt_tokens, completion_tokens),
            "service_tier": "default",
            "system_fingerprint": "fp_fakellm0001",
        }

    def _openai_stream(
        self,
        model: str,
        text: str,
        prompt_tokens: int,
        completion_tokens: int,
        include_usage: bool,
        calls: list | None = None,
    ) -> list[bytes]:
        base = {
            "id": f"chatcmpl-{_rand(29)}",
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": model,
            "service_tier": "default",
            "system_fingerprint": "fp_fakellm0001",
        }

        def chunk(choices: list, usage: dict | None = None) -> bytes:
            payload = {**base, "choices": choices}
            if include_usage:
                payload["usage"] = usage
            return f"data: {json.dumps(payload)}\n\n".encode()

        def choice(delta: dict, finish_reason: str | None = None) -> dict:
            return {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}

        events = [chunk([choice({"role": "assistant", "content": "" if text or not calls else None, "refusal": None})])]
        events += [chunk([choice({"content": piece})]) for piece in _split_words(text)]
        events += [chunk([choice(delta)]) for delta in openai_tool_deltas(calls or [])]
        events.append(chunk([choice({}, "tool_calls" if calls else "stop")]))
        if include_usage:
            events.append(chunk([], self._openai_usage(prompt_tokens, completion_tokens)))
        events.append(b"data: [DONE]\n\n")
        return events

    @staticmethod
    def _anthropic_usage(input_tokens: int, output_tokens: int) -> dict:
        return {
            "input_tokens": input_tokens,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
            "output_tokens": output_tokens,
            "service_tier": "standard",
        }

    def _answer_blocks(self, record: RecordedRequest, text: str) -> list[dict]:
        """A text reply's content: a call of the tool the request forces, with ``text`` (a JSON object) as its
        input; else (no forced tool, or text that is not a JSON object, as a refusing model sends) one text block."""
        tool = record.forced_tool
        if tool is not None:
            try:
                value = json.loads(text)
            except ValueError:
                value = None
            if isinstance(value, dict):
                [(call_id, _)] = self._issue_call_ids("anthropic", (ScriptedToolCall(tool, value),))
                return [{"type": "tool_use", "id": call_id, "name": tool, "input": value}]
        return [{"type": "text", "text": text}]

    @staticmethod
    def _stop_reason(blocks: list[dict]) -> str:
        return "tool_use" if any(b["type"] == "tool_use" for b in blocks) else "end_turn"

    def _anthropic_message(self, model: str, blocks: list[dict], input_tokens: int, output_tokens: int) -> dict:
        return {
            "id": f"msg_01{_rand(22)}",
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": blocks,
            "stop_reason": self._stop_reason(blocks),
            "stop_sequence": None,
            "usage": self._anthropic_usage(input_tokens, output_tokens),
        }

    def _anthropic_stream(self, model: str, blocks: list[dict], input_tokens: int, output_tokens: int) -> list[bytes]:
        def event(name: str, payload: dict) -> bytes:
            return f"event: {name}\ndata: {json.dumps(payload)}\n\n".encode()

        start_message = {
            "id": f"msg_01{_rand(22)}",
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": self._anthropic_usage(input_tokens, 1),
        }
        events = [event("message_start", {"type": "message_start", "message": start_message})]
        for index, block in enumerate(blocks):
            if block["type"] == "tool_use":
                events += [event(name, payload) for name, payload in anthropic_tool_use_events(index, block)]
            else:
                events += self._anthropic_text_events(event, index, block["text"])
            if index == 0:
                events.insert(2, event("ping", {"type": "ping"}))  # after the first block's start, as the API does
        events += [
            event(
                "message_delta",
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": self._stop_reason(blocks), "stop_sequence": None},
                    "usage": {
                        "input_tokens": input_tokens,
                        "cache_creation_input_tokens": 0,
                        "cache_read_input_tokens": 0,
                        "output_tokens": output_tokens,
                    },
                },
            ),
            event("message_stop", {"type": "message_stop"}),
        ]
        return events

    @staticmethod
    def _anthropic_text_events(event: Callable[[str, dict], bytes], index: int, text: str) -> list[bytes]:
        start = {"type": "content_block_start", "index": index, "content_block": {"type": "text", "text": ""}}
        events = [event("content_block_start", start)]
        events += [
            event(
                "content_block_delta",
                {"type": "content_block_delta", "index": index, "delta": {"type": "text_delta", "text": piece}},
            )
            for piece in _split_words(text)
        ]
        events.append(event("content_block_stop", {"type": "content_block_stop", "index": index}))
        return events

    @staticmethod
    def _models_payload(api: str) -> dict:
        ids = ["gpt-4o-mini", "gpt-4o"] if api == "openai" else ["claude-3-5-haiku-latest", "claude-sonnet-4-0"]
        if api == "openai":
            return {
                "object": "list",
                "data": [{"id": i, "object": "model", "created": 1715367049, "owned_by": "fake-llm"} for i in ids],
            }
        return {
            "data": [
                {"type": "model", "id": i, "display_name": i, "created_at": "2025-01-01T00:00:00Z"} for i in ids
            ],
            "has_more": False,
            "first_id": ids[0],
            "last_id": ids[-1],
        }

    # ------------------------------------------------------------------ writing

    @staticmethod
    def _request_id() -> str:
        return f"req_{_rand(24)}"

    def _start_response(self, h: _Handler, status: int, content_type: str, extra: dict[str, str]) -> None:
        h.send_response(status, _REASONS.get(status, "Error"))
        extra_lower = {k.lower() for k in extra}
        if "content-type" not in extra_lower:
            h.send_header("Content-Type", content_type)
        request_id = self._request_id()
        if "x-request-id" not in extra_lower:
            h.send_header("x-request-id", request_id)
        if "request-id" not in extra_lower:
            h.send_header("request-id", request_id)
        for key, value in extra.items():
            if key.lower() not in ("content-length", "transfer-encoding", "connection"):
                h.send_header(key, value)

    def _send_json(self, h: _Handler, status: int, payload: dict, extra: dict[str, str] | None = None) -> None:
        data = json.dumps(payload).encode()
        self._start_response(h, status, "application/json", extra or {})
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        h.mark_done()
        h.wfile.write(data)

    def _send_sse(self, h: _Handler, events: list[bytes], extra: dict[str, str]) -> None:
        chunked = h.request_version != "HTTP/1.0"
        self._start_response(h, 200, "text/event-stream; charset=utf-8", extra)
        h.send_header("Cache-Control", "no-cache")
        if chunked:
            h.send_header("Transfer-Encoding", "chunked")
        else:
            h.send_header("Connection", "close")
            h.close_connection = True
        h.end_headers()
        for data in events:
            h.wfile.write(b"%X\r\n%s\r\n" % (len(data), data) if chunked else data)
        h.mark_done()
        if chunked:
            h.wfile.write(b"0\r\n\r\n")
        else:
            h.wfile.flush()

    def _send_models(self, h: _Handler, api: str) -> None:
        self._send_json(h, 200, self._models_payload(api))

    def _send_error(
        self,
        h: _Handler,
        api: str,
        status: int,
        message: str,
        *,
        code: str | None | bool = True,
        extra_headers: dict[str, str] | None = None,
    ) -> None:
        if api == "anthropic":
            error_type = _ANTHROPIC_ERROR_TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")
            payload: dict = {
                "type": "error",
                "error": {"type": error_type, "message": message},
                "request_id": self._request_id(),
            }
        else:
            error_type, default_code = _OPENAI_ERROR_TYPES.get(
                status, ("server_error" if status >= 500 else "invalid_request_error", None)
            )
            payload = {
                "error": {
                    "message": message,
                    "type": error_type,
                    "param": None,
                    "code": default_code if code is True else code,
                }
            }
        self._send_json(h, status, payload, extra_headers)


def _header_strings(headers: dict | None) -> dict[str, str]:
    return {str(k): str(v) for k, v in (headers or {}).items()}
