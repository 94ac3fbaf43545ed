"""`mcp_servers:` in config.yml: the schema, the checks the schema cannot make, the secrets, and the
settings an McpToolSource is made from."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field

from .errors import ConfigError, Problem
from .names import SERVER_NAME_RULE, is_server_name
from .policies import new_dict, new_list
from .yamlsrc import YamlDoc

if TYPE_CHECKING:
    from .tools.mcp import McpServerSettings


class McpServerConfig(BaseModel):
    """One MCP server: a stdio command (`command`, `args`, `env`, `cwd`) or a streamable HTTP `url`."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=(), defer_build=True)

    command: str | None = Field(None, description="The program that serves MCP on stdio.")
    # `str | None` below: an unset ${VAR} is None, and it is an error only when a step uses the server.
    args: list[str | None] = Field(default_factory=new_list)
    env: dict[str, str | None] = Field(default_factory=new_dict, description="Environment variables for the "
                                       "server, on top of a safe few (PATH, HOME, ...): nothing else is passed.")
    cwd: str | None = Field(None, description="Its working directory (default: the config's folder).")
    url: str | None = Field(None, description="The endpoint of a streamable HTTP server.")
    headers: dict[str, str | None] = Field(default_factory=new_dict, description="Sent with every HTTP request.")
    timeout_s: float = Field(30.0, gt=0, description="Seconds to start the server and to list its tools.")


_STDIO_ONLY = ("args", "env", "cwd")


def mcp_problems(servers: dict[str, McpServerConfig], doc: YamlDoc) -> list[Problem]:
    """Names that cannot prefix tool names, and servers that are neither (or both) stdio and HTTP."""
    problems = []
    for name, server in servers.items():
        loc = ("mcp_servers", name)
        if not is_server_name(name):
            problems.append(doc.problem(loc, f"mcp_servers: {name!r} is not allowed: {SERVER_NAME_RULE}",
                                        "rename it (and every tool reference to it)"))
        if server.command is not None and server.url is not None:
            problems.append(doc.problem((*loc, "url"), f"mcp_servers.{name}: both command and url are set",
                                        "keep command for a stdio server, or url for a streamable HTTP one"))
        elif server.command is None and server.url is None:
            problems.append(doc.problem(loc, f"mcp_servers.{name}: neither command nor url is set",
                                        "add command: (a stdio server) or url: (a streamable HTTP server)"))
        elif server.url is not None:
            for key in _STDIO_ONLY:
                if key in server.model_fields_set:
                    problems.append(doc.problem((*loc, key), f"mcp_servers.{name}.{key}: only for a stdio server "
                                                             "(one with command:)", f"remove {key}:"))
        elif "headers" in server.model_fields_set:
            problems.append(doc.problem((*loc, "headers"), f"mcp_servers.{name}.headers: only for an HTTP server "
                                                           "(one with url:)", "remove headers:"))
    return problems


def mcp_secrets(servers: dict[str, McpServerConfig], doc: YamlDoc) -> list[str]:
    """What must never be shown: every value a ${VAR} under mcp_servers expanded to, and every header."""
    secrets = [value for loc, values in doc.env_values.items() if loc[:1] == ("mcp_servers",) for value in values]
    secrets += [value for server in servers.values() for value in server.headers.values() if value]
    return secrets


def redact_servers(data: dict[str, Any]) -> None:
    """The dumped config's env and header values, replaced by '***' (a server's env is where its keys go)."""
    for server in data.get("mcp_servers", {}).values():
        for key in ("env", "headers"):
            if key in server:
                server[key] = dict.fromkeys(server[key], "***")


def server_settings(name: str, server: McpServerConfig, *, path: str, lines: dict[str, int | None],
                    unset_env: dict[str, tuple[str, int | None]], base_dir: Path) -> McpServerSettings:
    """What an McpToolSource needs; a ConfigError at path:line when one of its ${VAR}s is not set."""
    from .tools.mcp import McpServerSettings

    prefix = f"mcp_servers.{name}."
    for dotted, (var, line) in unset_env.items():
        if dotted.startswith(prefix):
            where = f"{path}:{line}: " if path else ""
            raise ConfigError(f"{where}MCP server {name!r}: {dotted} is ${{{var}}}, but {var} is not set",
                              hint=f"export {var}=... before running")
    cwd = base_dir / server.cwd if server.cwd else base_dir  # relative paths are relative to the config's folder
    line = lines.get(name)
    return McpServerSettings(
        name=name, command=server.command, args=tuple(arg or "" for arg in server.args),
        env={key: value or "" for key, value in server.env.items()}, cwd=str(cwd), url=server.url,
        headers={key: value or "" for key, value in server.headers.items()}, timeout_s=server.timeout_s,
        where=(f"{path}:{line}" if line else path) if path else "")
