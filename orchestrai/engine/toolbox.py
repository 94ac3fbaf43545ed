"""A step's tools made ready for its model: specs under wire names, and how each runs.

Python tools run in-process; MCP tools through their server's ToolSource (started on first use,
closed when the run ends); modules and sub-pipelines offered as tools run nested under the step,
through `StepContext.spawn`, sharing the run's budget, limits and cache.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Protocol

from ..api import ToolSpec
from ..config import Config
from ..errors import ConfigError, ModuleError
from ..modules.base import ModuleRegistry
from ..pipeline.graph import start_inputs
from ..pipeline.spec import Tools, ToolUse
from ..tools.names import wire_name
from .agent import Runner, Toolbox


class RunContext(Protocol):
    """What a toolbox needs of the run (engine/context.py's RunContext, which imports this module)."""

    registry: ModuleRegistry
    config: Config
    mcp: Any  # the run's McpServers, made on first use


async def build_toolbox(run: RunContext, tools: Tools) -> Toolbox:
    specs: dict[str, ToolSpec] = {}
    runners: dict[str, Runner] = {}
    cacheable: set[str] = set()
    for use in tools.uses:
        spec, runner, cached = await _prepare(run, use)
        specs[spec.wire_name] = spec
        runners[spec.wire_name] = runner
        if cached or use.cacheable:
            cacheable.add(spec.wire_name)
    return Toolbox(specs, runners, frozenset(cacheable))


async def _prepare(run: RunContext, use: ToolUse) -> tuple[ToolSpec, Runner, bool]:
    wire = wire_name(use.name)
    if use.kind == "python":
        tool = run.registry.tools.by_name[use.target]
        spec = ToolSpec(use.name, wire, use.description or tool.spec.description, tool.spec.parameters)

        async def python(ctx: Any, arguments: dict[str, Any], number: int) -> Any:
            return await tool(arguments)

        return spec, python, tool.cacheable
    if use.kind == "mcp":
        return await _mcp(run, use, wire)
    if use.kind == "module":
        parameters, description = _module_interface(run, use.target)
        spec = ToolSpec(use.name, wire, use.description or description, parameters)
    else:
        assert use.pipeline is not None
        names = start_inputs(use.pipeline.pipeline)
        parameters = {"type": "object", "properties": {name: {"type": "string"} for name in names},
                      "required": names, "additionalProperties": False}
        spec = ToolSpec(use.name, wire, use.description or use.pipeline.pipeline.description or
                        f"Runs the pipeline {use.target} with these inputs and returns its results.", parameters)

    async def spawned(ctx: Any, arguments: dict[str, Any], number: int) -> Any:
        if ctx.spawn is None:
            raise ModuleError(f"tool {use.name!r}: modules and pipelines run as tools only inside a run")
        return await ctx.spawn(use, arguments, number)

    return spec, spawned, False


async def _mcp(run: RunContext, use: ToolUse, wire: str) -> tuple[ToolSpec, Runner, bool]:
    server, _, tool_name = use.target.partition(".")
    source = mcp_source(run, server)
    listed = await source.list_tools()
    found = next((spec for spec in listed if spec.name == use.target), None)
    if found is None:
        names = ", ".join(spec.name.partition(".")[2] for spec in listed) or "none"
        raise ModuleError(f"MCP server {server!r} has no tool {tool_name!r} (its tools: {names})",
                          hint=f"fix the tool name in the step's tools: list ({use.target})")
    spec = replace(found, wire_name=wire, description=use.description or found.description)

    async def mcp(ctx: Any, arguments: dict[str, Any], number: int) -> Any:
        return await source.call(found, arguments)

    return spec, mcp, False


def mcp_source(run: RunContext, server: str) -> Any:
    """The run's one ToolSource for an MCP server (started by its first request, closed with the run)."""
    if run.mcp is None:
        run.mcp = run.config.mcp_servers()
    if server not in run.mcp:
        raise ConfigError(f"MCP server {server!r} is not configured", hint="add it under mcp_servers: in config.yml")
    return run.mcp.source(server)


def _module_interface(run: RunContext, name: str) -> tuple[dict[str, Any], str]:
    """A module's arguments as a JSON Schema, and its description: a prompt's template variables (strings),
    a Python module's declared `inputs` (any JSON), else one free-form `input`."""
    module = run.registry.instance(name)
    inputs = getattr(module, "inputs", None)
    if not isinstance(inputs, (list, tuple)):
        variables = getattr(module, "variables", None)
        inputs = sorted(variables()) if callable(variables) else None
    description = str(getattr(module, "description", None) or (module.__doc__ or "").strip().split("\n\n")[0]
                      or f"Runs the module {name}.")
    if not inputs:
        return ({"type": "object", "properties": {"input": {"type": "string"}}, "required": ["input"]}, description)
    kind: dict[str, Any] = {"type": "string"} if getattr(module, "variables", None) else {}
    return ({"type": "object", "properties": {str(n): dict(kind) for n in inputs}, "required": [str(n) for n in inputs],
             "additionalProperties": False}, description)
