"""A real MCP server for the tests, written with the official `mcp` SDK.

`python mcp_weather_server.py` serves over stdio; `python mcp_weather_server.py --http` serves streamable
HTTP on a free port of 127.0.0.1 and prints that port as its first line of stdout. `--fail-start` writes a
reason to stderr and exits before speaking MCP (a server that cannot start).
"""

import os
import signal
import socket
import sys
import threading
import time
from typing import Any

if __name__ == "__main__" and "--fail-start" in sys.argv:  # before the SDK's import can write anything
    sys.stderr.write("weather: missing WEATHER_API_KEY\nsecond line\n")
    sys.exit(1)

try:  # mcp 2.x renamed FastMCP
    from mcp.server.mcpserver import Context
    from mcp.server.mcpserver import MCPServer as Server
    from mcp.server.mcpserver.exceptions import ToolError
except ImportError:  # pragma: no cover - mcp 1.x
    from mcp.server.fastmcp import Context  # type: ignore[no-redef]
    from mcp.server.fastmcp import FastMCP as Server  # type: ignore[no-redef]
    from mcp.server.fastmcp.exceptions import ToolError  # type: ignore[no-redef]

server = Server("weather", log_level="CRITICAL")


@server.tool()
def forecast(city: str) -> str:
    """The weather forecast for a city."""
    return f"Sunny in {city}, 21 C"


@server.tool(name="daily.summary")
def daily_summary(city: str):  # type: ignore[no-untyped-def]  # no return type: no structured content
    """Two lines of text (a dot in the name: not a wire name as is)."""
    return [f"{city}: morning fog", f"{city}: sunny afternoon"]


@server.tool()
def fail(reason: str = "no reason") -> str:
    """A tool that always raises (the SDK's ToolError: its message reaches the client)."""
    raise ToolError(f"the weather service is down: {reason}")


@server.tool()
def crash() -> str:
    """Exits the server process, as a crash would."""
    sys.stderr.write("crashing on purpose\n")
    sys.stderr.flush()
    os._exit(3)


@server.tool()
def environment() -> dict[str, Any]:
    """The server process's id and environment variables (a dict: structured content)."""
    return {"pid": os.getpid(), "variables": dict(os.environ)}


@server.tool()
async def stubborn() -> str:
    """From now on the process ignores SIGTERM and does not exit when its stdin closes (async: signal
    handlers can only be set in the main thread, where async tools run)."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    threading.Thread(target=time.sleep, args=(3600,), daemon=False).start()
    return "stubborn"


@server.tool()
def headers(ctx: Context) -> dict[str, Any]:  # type: ignore[type-arg]
    """The HTTP request's headers (streamable HTTP only)."""
    request = ctx.request_context.request
    return {"headers": dict(getattr(request, "headers", {}) or {})}


@server.tool(name="a_tool_whose_name_is_long_enough_to_need_a_shorter_wire_name_for_the_providers")
def long_name() -> str:
    """A tool whose wire name would pass 64 characters."""
    return "long"


def serve_http() -> None:
    import anyio
    import uvicorn

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    # Listening before the port is printed: a client connecting while uvicorn still starts waits in
    # the backlog instead of being refused (seen under load).
    sock.listen(64)
    print(sock.getsockname()[1], flush=True)
    config = uvicorn.Config(server.streamable_http_app(), log_level="warning")
    anyio.run(lambda: uvicorn.Server(config).serve(sockets=[sock]))


if __name__ == "__main__":
    if "--http" in sys.argv:
        serve_http()
    else:
        server.run()
