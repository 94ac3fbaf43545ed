"""MCP servers as tool sources, through the official `mcp` SDK (1.9 up to 2.x).

One McpToolSource per configured server. It starts the server (a stdio child process, or a streamable
HTTP connection) on the first `list_tools` or `call`, offers its tools as `<server>.<tool>`, and
survives one death: the call in flight when the server goes answers with a ToolError, the next call
starts it again, and after a second death every call errors.

The SDK's transports and session are async context managers built on anyio task groups, which must be
entered and exited in the same task: a background task per connection owns them (`_serve`); callers
only send requests through the session it hands over.

`mcp` is imported on first use: `validate` and the CLI's start-up never pay for it.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import shlex
import tempfile
from collections.abc import Callable, Iterable, Mapping
from contextlib import AbstractAsyncContextManager, AsyncExitStack
from dataclasses import dataclass, field
from typing import IO, Any, cast

from ..api import ToolSpec
from ..errors import ConfigError, OrchestraiError, ToolError
from . import mcp_sdk as sdk

_WIRE_CHARS = re.compile(r"[^a-zA-Z0-9_-]")
_WIRE_MAX = 64  # providers accept ^[a-zA-Z0-9_-]{1,64}$
# The SDK's own stdio shutdown closes stdin, waits 2 s, sends SIGTERM, waits 2 s, then SIGKILLs the group.
_STOP_GRACE_S = 10.0
_STDERR_LINES = 3


@dataclass(frozen=True)
class McpServerSettings:
    """One server as config.yml describes it: `command` (stdio) or `url` (streamable HTTP)."""

    name: str
    command: str | None = None
    args: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)  # on top of the SDK's safe default environment
    cwd: str | None = None
    url: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    timeout_s: float = 30.0  # to start and to list the tools
    where: str = ""  # "config.yml:12", for messages

    def describe(self) -> str:
        return f"`{shlex.join([self.command, *self.args])}`" if self.command is not None else str(self.url)


def wire_name(server: str, tool: str) -> str:
    """`weather__forecast` for weather.forecast: what providers accept, shortened with a hash past 64."""
    name = _WIRE_CHARS.sub("_", f"{server}__{tool}")
    return name if len(name) <= _WIRE_MAX else _hashed(name, f"{server}.{tool}")


def _hashed(name: str, full: str) -> str:
    return f"{name[:_WIRE_MAX - 9]}_{hashlib.sha256(full.encode()).hexdigest()[:8]}"


class _Connection:
    """One started server: the task owning the SDK's context managers, and what it tells the callers."""

    def __init__(self, stderr: IO[bytes] | None) -> None:
        self.ready: asyncio.Future[Any] = asyncio.get_running_loop().create_future()  # the ClientSession
        self.ready.add_done_callback(lambda f: f.cancelled() or f.exception())  # read even when nobody waits
        self.lost = asyncio.Event()  # the transport's stream ended: the server exited or dropped the connection
        self.wake = asyncio.Event()  # the owner task should exit its context managers (stop, or lost)
        self.stderr = stderr
        self.stderr_text = ""  # what the server wrote to stderr, once the file is closed
        self.task: asyncio.Task[None] | None = None

    def mark_lost(self) -> None:
        self.lost.set()
        self.wake.set()

    def stderr_lines(self, *, last: bool = False) -> list[str]:
        text = self.stderr_text if self.stderr is None or self.stderr.closed else _read_all(self.stderr)
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        return lines[-_STDERR_LINES:] if last else lines[:_STDERR_LINES]


def _read_all(file: IO[bytes]) -> str:
    # pread: the child writes through the same open file, so moving its offset would make it overwrite.
    pread = getattr(os, "pread", None)
    if pread is None:  # pragma: no cover - Windows: no stderr in the messages
        return ""
    size = os.fstat(file.fileno()).st_size
    start = 0 if size <= 65536 else size - 65536
    return cast(bytes, pread(file.fileno(), size - start, start)).decode("utf-8", "replace")


class McpToolSource:
    """An orchestrai.api.ToolSource for one MCP server."""

    def __init__(self, settings: McpServerSettings) -> None:
        self.settings = settings
        self.name = settings.name
        self._lock = asyncio.Lock()
        self._connection: _Connection | None = None
        self._deaths = 0
        self._failure: OrchestraiError | None = None  # a start that failed: every later call says so
        self._closed = False
        self._tools: list[ToolSpec] | None = None
        self._remote: dict[str, str] = {}  # wire name -> the tool's name on the server

    async def list_tools(self) -> list[ToolSpec]:
        """The server's tools, listed once per run (the server is started if it is not running)."""
        if self._tools is None:
            session = await self._session()
            try:
                tools = await asyncio.wait_for(sdk.list_all_tools(session), self.settings.timeout_s)
            except asyncio.TimeoutError:
                raise self._error(f"did not list its tools within {self.settings.timeout_s:g} s") from None
            except Exception as exc:
                raise self._error(f"could not list its tools: {sdk.reason(exc)}") from None
            self._tools = self._specs(tools)
        return list(self._tools)

    async def call(self, tool: ToolSpec, arguments: dict[str, Any]) -> Any:
        """Call `tool`: its structured content, else its text; an error result raises ToolError."""
        remote = self._remote.get(tool.wire_name)
        if remote is None:
            raise ToolError(f"{tool.name}: not a tool of MCP server {self.name!r}")
        connection = await self._started()
        call = asyncio.ensure_future(connection.ready.result().call_tool(remote, arguments))
        lost = asyncio.ensure_future(connection.lost.wait())
        try:
            await asyncio.wait({call, lost}, return_when=asyncio.FIRST_COMPLETED)
        finally:  # also when this task is cancelled (the engine's tool_timeout_s): the request goes too
            for waiter in (call, lost):
                waiter.cancel()
        error = call.exception() if call.done() and not call.cancelled() else None
        if call.done() and not call.cancelled() and error is None:
            return sdk.result_value(tool, call.result())
        if connection.lost.is_set() or sdk.is_disconnect(error):
            raise await self._death(connection, tool)
        raise ToolError(f"{tool.name}: {sdk.reason(error) if error else 'no answer'}")

    async def aclose(self) -> None:
        """Stop the server (its process is killed if it does not exit); later calls raise ToolError."""
        self._closed = True
        connection, self._connection = self._connection, None
        if connection is not None:
            await _stop(connection)

    def _specs(self, tools: list[Any]) -> list[ToolSpec]:
        specs, self._remote = [], {}
        for tool in tools:
            name = str(tool.name)
            wire = wire_name(self.name, name)
            if wire in self._remote:  # two names that only differ in characters providers refuse
                wire = _hashed(wire, f"{self.name}.{name}")
            self._remote[wire] = name
            schema = sdk.field_of(tool, "input_schema", "inputSchema") or {}
            description = tool.description or getattr(tool, "title", None) or ""
            specs.append(ToolSpec(name=f"{self.name}.{name}", wire_name=wire, description=str(description),
                                  parameters=dict(schema) or {"type": "object", "properties": {}}))
        return specs

    async def _session(self) -> Any:
        return (await self._started()).ready.result()

    async def _started(self) -> _Connection:
        """The running connection: started on first use, restarted once after a death."""
        async with self._lock:
            if self._closed:
                raise ToolError(f"MCP server {self.name!r} is stopped (the run is ending)")
            if self._failure is not None:
                raise self._failure
            if self._connection is not None and not self._connection.lost.is_set():
                return self._connection
            if self._connection is not None:  # it died between calls
                await self._death(self._connection, None)
            if self._deaths >= 2:
                raise ToolError(f"MCP server {self.name!r} stopped twice during this run; its tools are unavailable")
            try:
                self._connection = await self._connect()
            except OrchestraiError as exc:
                self._failure = exc
                raise
            return self._connection

    async def _connect(self) -> _Connection:
        # The server's stderr, for messages; the owner task closes it when the server is gone.
        stderr = tempfile.TemporaryFile() if self.settings.command is not None else None  # noqa: SIM115
        connection = _Connection(stderr)
        connection.task = asyncio.create_task(self._serve(connection), name=f"mcp server {self.name}")
        try:
            await asyncio.wait_for(asyncio.shield(connection.ready), self.settings.timeout_s)
        except asyncio.TimeoutError:
            await _stop(connection, grace_s=0)
            raise self._error(f"did not answer within {self.settings.timeout_s:g} s", connection) from None
        except Exception as exc:
            await _stop(connection)
            raise self._error(sdk.start_reason(exc, self.settings.command), connection) from None
        return connection

    async def _serve(self, connection: _Connection) -> None:
        """The task owning the SDK's context managers: enters them, hands the session over, exits them."""
        from mcp import ClientSession

        try:
            async with AsyncExitStack() as stack:
                streams = await stack.enter_async_context(self._transport(connection))
                read = sdk.WatchedStream(streams[0], connection.mark_lost)
                session = await stack.enter_async_context(ClientSession(read, streams[1]))
                await session.initialize()
                connection.ready.set_result(session)
                await connection.wake.wait()
        except Exception as exc:  # the SDK's task groups raise groups; a start failure is all we report
            if not connection.ready.done():
                connection.ready.set_exception(exc)
        finally:
            if not connection.ready.done():
                connection.ready.set_exception(ConnectionError("stopped before it answered"))
            connection.mark_lost()
            if connection.stderr is not None:
                connection.stderr_text = _read_all(connection.stderr)
                connection.stderr.close()

    def _transport(self, connection: _Connection) -> AbstractAsyncContextManager[Any]:
        settings = self.settings
        if settings.command is None:
            return sdk.http_transport(str(settings.url), dict(settings.headers))
        from mcp.client.stdio import StdioServerParameters, get_default_environment, stdio_client

        # Never the whole environment: our API keys reach a server only when its config passes them.
        params = StdioServerParameters(command=settings.command, args=list(settings.args), cwd=settings.cwd,
                                       env={**get_default_environment(), **settings.env})
        return stdio_client(params, errlog=cast(Any, connection.stderr))

    async def _death(self, connection: _Connection, tool: ToolSpec | None) -> ToolError:
        """Count a server's death once (however many calls saw it) and say what happens next."""
        if self._connection is connection:
            self._connection = None
            self._deaths += 1
            await _stop(connection)
        stderr = connection.stderr_lines(last=True)
        said = f" (its stderr: {' | '.join(stderr)})" if stderr else ""
        then = ("it will be restarted for the next call" if self._deaths < 2
                else "it stopped twice, so its tools are unavailable for the rest of the run")
        during = f" during the call to {tool.name}" if tool else ""
        return ToolError(f"MCP server {self.name!r} stopped{during}{said}; {then}")

    def _error(self, reason: str, connection: _Connection | None = None) -> OrchestraiError:
        """A start that failed: a ConfigError the first time (the config is wrong), a ToolError on a restart."""
        stderr = connection.stderr_lines() if connection else []
        said = f"; its stderr: {' | '.join(stderr)}" if stderr else ""
        where = f"{self.settings.where}: " if self.settings.where else ""
        message = f"{where}MCP server {self.name!r} ({self.settings.describe()}) {reason}{said}"
        if self._deaths:
            return ToolError(message)
        hint = (f"run the command in a terminal to see why, or fix mcp_servers.{self.name} in the config"
                if self.settings.command is not None else
                f"check that the server is running at {self.settings.url}, or fix mcp_servers.{self.name}")
        return ConfigError(message, hint=hint)


async def _stop(connection: _Connection, *, grace_s: float = _STOP_GRACE_S) -> None:
    """Let the owner task exit the SDK's context managers; cancel it if it does not within the grace."""
    connection.wake.set()
    task = connection.task
    if task is None:
        return
    if grace_s:
        await asyncio.wait({task}, timeout=grace_s)
    if not task.done():
        task.cancel()
        await asyncio.wait({task}, timeout=_STOP_GRACE_S)


class McpServers:
    """One McpToolSource per configured server, made when first asked for (so a server's config is
    only resolved, and its ${VAR}s only required, when a step uses it); `aclose` stops them all."""

    def __init__(self, names: Iterable[str], settings: Callable[[str], McpServerSettings]) -> None:
        self.names = frozenset(names)
        self._settings = settings
        self._sources: dict[str, McpToolSource] = {}

    def __contains__(self, name: object) -> bool:
        return name in self.names

    def source(self, name: str) -> McpToolSource:
        """The source for server `name` (KeyError when it is not configured; ConfigError when its
        config cannot be resolved, e.g. an unset ${VAR})."""
        if name not in self.names:
            raise KeyError(name)
        if name not in self._sources:
            self._sources[name] = McpToolSource(self._settings(name))
        return self._sources[name]

    async def aclose(self) -> None:
        sources, self._sources = list(self._sources.values()), {}
        await asyncio.gather(*(source.aclose() for source in sources))
