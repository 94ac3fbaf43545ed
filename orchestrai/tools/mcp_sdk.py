"""What differs between the `mcp` SDK's versions (1.9 up to 2.x), and what its answers and errors mean.

Everything here takes the SDK's objects as `Any`: its models are camelCase in 1.x and snake_case in 2.x,
and some of its entry points moved; `mcp` is imported inside the functions (on first use).
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from ..api import ToolSpec
from ..errors import ToolError

_MAX_PAGES = 100  # tools/list pages: a server that never stops paging is a broken server
_CONNECTION_CLOSED = -32000  # the JSON-RPC code the SDK answers in-flight requests with when the server goes


class WatchedStream:
    """A transport's read stream that calls `on_end` when it ends (the server exited or dropped the
    connection). The SDK (2.x) answers the requests in flight with "Connection closed" then; this makes a
    death visible to the caller whatever the SDK version does."""

    def __init__(self, stream: Any, on_end: Callable[[], None]) -> None:
        self._stream, self._on_end = stream, on_end

    def __getattr__(self, name: str) -> Any:  # `last_context` and whatever else a transport's stream has
        return getattr(self._stream, name)

    async def receive(self) -> Any:
        try:
            return await self._stream.receive()
        except Exception:
            self._on_end()
            raise

    def __aiter__(self) -> WatchedStream:
        return self

    async def __anext__(self) -> Any:
        try:
            return await self._stream.__anext__()
        except (Exception, StopAsyncIteration):
            self._on_end()
            raise

    async def aclose(self) -> None:
        await self._stream.aclose()

    async def __aenter__(self) -> WatchedStream:
        await self._stream.__aenter__()
        return self

    async def __aexit__(self, *exc_info: Any) -> Any:
        return await self._stream.__aexit__(*exc_info)


@asynccontextmanager
async def http_transport(url: str, headers: dict[str, str]) -> AsyncIterator[Any]:
    """The streamable HTTP transport with `headers` on every request, in the SDK's 2.x or 1.x spelling."""
    from mcp.client import streamable_http

    modern = getattr(streamable_http, "streamable_http_client", None)
    if modern is None:  # pragma: no cover - mcp 1.x before streamable_http_client
        async with streamable_http.streamablehttp_client(url, headers=headers) as streams:  # type: ignore[attr-defined]
            yield streams
        return
    from mcp.shared._httpx_utils import create_mcp_http_client

    async with create_mcp_http_client(headers=headers) as client, modern(url, http_client=client) as streams:
        yield streams


async def list_all_tools(session: Any) -> list[Any]:
    """Every page of tools/list (the SDK's 2.x `params=`, or 1.x's `cursor`)."""
    result = await session.list_tools()
    tools = list(result.tools)
    for _ in range(_MAX_PAGES):
        cursor = field_of(result, "next_cursor", "nextCursor")
        if not cursor:
            break
        if "params" in inspect.signature(session.list_tools).parameters:
            from mcp.types import PaginatedRequestParams

            result = await session.list_tools(params=PaginatedRequestParams(cursor=cursor))
        else:  # pragma: no cover - mcp 1.x before params=
            result = await session.list_tools(cursor)
        tools.extend(result.tools)
    return tools


def result_value(tool: ToolSpec, result: Any) -> Any:
    text = "\n".join(_block_text(block) for block in (result.content or []))
    if field_of(result, "is_error", "isError"):
        raise ToolError(f"{tool.name}: {text or 'the tool reported an error'}")
    structured = field_of(result, "structured_content", "structuredContent")
    return structured if structured is not None else text


def _block_text(block: Any) -> str:
    if isinstance(getattr(block, "text", None), str):
        return str(block.text)
    resource = getattr(block, "resource", None)
    if isinstance(text := getattr(resource, "text", None), str):
        return text
    kind = getattr(block, "type", "content")
    mime = field_of(block, "mime_type", "mimeType") or field_of(resource, "mime_type", "mimeType")
    return f"[{kind}{' ' + mime if mime else ''}]"


def field_of(obj: Any, snake: str, camel: str) -> Any:
    """A field of an SDK model: snake_case in mcp 2.x, camelCase in 1.x."""
    value = getattr(obj, snake, None)
    return value if value is not None else getattr(obj, camel, None)


def _leaf(exc: BaseException) -> BaseException:
    """The first real exception inside the (nested) exception groups the SDK's task groups raise."""
    while isinstance(subs := getattr(exc, "exceptions", None), tuple) and subs:
        exc = subs[0]
    return exc


def is_disconnect(exc: BaseException | None) -> bool:
    if exc is None:
        return False
    import anyio

    exc = _leaf(exc)
    code = getattr(getattr(exc, "error", None), "code", None)
    return code == _CONNECTION_CLOSED or isinstance(exc, (OSError, EOFError, anyio.ClosedResourceError,
                                                          anyio.BrokenResourceError, anyio.EndOfStream))


def reason(exc: BaseException) -> str:
    exc = _leaf(exc)
    message = getattr(getattr(exc, "error", None), "message", None) or str(exc)
    return message if message else type(exc).__name__


def start_reason(exc: BaseException, command: str | None) -> str:
    """Why a server did not start, for `MCP server 'x' (command) <reason>`."""
    exc = _leaf(exc)
    if isinstance(exc, FileNotFoundError) and command is not None:
        missing = exc.filename if exc.filename is not None else command
        return f"did not start: {missing} was not found"
    if isinstance(exc, PermissionError):
        return f"did not start: {exc.strerror or exc}"
    if is_disconnect(exc) or isinstance(exc, ConnectionError):
        return "exited before answering" if command is not None else f"closed the connection: {reason(exc)}"
    return f"did not start: {reason(exc)}"
