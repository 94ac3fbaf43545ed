"""A step's `tools:` and `role:` at validation time: every tool known, every use allowed by the role.

Deny by default: a model can call only what its step lists, and a step with a role can list only
what the role allows (`tools` globs for Python and MCP tools, `spawn` for modules and sub-pipelines).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from ..policies import Role
from ..tools.names import wire_name
from .spec import StepSpec, SubPipeline, ToolRef, Tools, ToolUse

Add = Callable[[tuple[Any, ...], str, str | None], None]  # (yaml location, message, hint)
LoadPipeline = Callable[[tuple[Any, ...], str, str], SubPipeline | None]  # (loc, step id, path) -> sub-pipeline


class ToolResolver:
    """Resolves the tools of the steps of one pipeline file."""

    def __init__(self, python_tools: Mapping[str, Any], mcp_servers: Mapping[str, Any], roles: Mapping[str, Role],
                 module_exists: Callable[[str], bool], load_pipeline: LoadPipeline, add: Add) -> None:
        self.python_tools, self.mcp_servers, self.roles = python_tools, mcp_servers, roles
        self.module_exists, self.load_pipeline, self.add = module_exists, load_pipeline, add

    def resolve(self, loc: tuple[Any, ...], step_id: str, spec: StepSpec) -> Tools | None:
        role = self._role(loc, step_id, spec.role)
        if not spec.tools:  # a role without tools still brings its budget
            return None if role is None else Tools((), role=spec.role, role_budget_usd=role.budget_usd)
        uses: list[ToolUse] = []
        seen: dict[str, int] = {}
        for position, entry in enumerate(spec.tools):
            where = (*loc, "tools", position)
            use = self._one(where, step_id, entry if isinstance(entry, ToolRef) else ToolRef(tool=entry))
            if use is None:
                continue
            if wire_name(use.name) in seen:
                self.add(where, f"step {step_id!r}: tool {use.name!r} is listed twice", "list each tool once")
                continue
            seen[wire_name(use.name)] = position
            if role is not None:
                self._check_role(where, step_id, spec.role or "", role, use)
            uses.append(use)
        rounds = spec.max_tool_rounds
        if role is not None and role.max_tool_rounds is not None:
            rounds = min(rounds, role.max_tool_rounds)
        return Tools(tuple(uses), rounds, spec.tool_timeout_s, spec.role, role.budget_usd if role else None)

    def _role(self, loc: tuple[Any, ...], step_id: str, name: str | None) -> Role | None:
        if name is None:
            return None
        role = self.roles.get(name)
        if role is None:
            known = ", ".join(sorted(self.roles)) or "none defined"
            self.add((*loc, "role"), f"step {step_id!r}: unknown role {name!r}",
                     f"define it under roles: in the pipeline or config.yml (roles: {known})")
        return role

    def _one(self, where: tuple[Any, ...], step_id: str, ref: ToolRef) -> ToolUse | None:
        given = [key for key in ("tool", "module", "pipeline") if getattr(ref, key) is not None]
        if len(given) != 1:
            self.add(where, f"step {step_id!r}: a tool entry needs exactly one of tool:, module: and pipeline:",
                     "e.g. {module: translator} or {pipeline: pipelines/research.yml, name: research}")
            return None
        if ref.tool is not None:
            return self._named(where, step_id, ref)
        if ref.module is not None:
            if not self.module_exists(ref.module):
                self.add(where, f"step {step_id!r}: tool module {ref.module!r} does not exist",
                         "`orchestrai modules` lists the modules")
                return None
            return ToolUse(ref.name or ref.module, "module", ref.module, ref.description, ref.cacheable)
        assert ref.pipeline is not None
        sub = self.load_pipeline(where, step_id, ref.pipeline)
        if sub is None:
            return None
        name = ref.name or wire_name(ref.pipeline.rsplit("/", 1)[-1].rsplit(".", 1)[0])
        return ToolUse(name, "pipeline", ref.pipeline, ref.description, ref.cacheable, sub)

    def _named(self, where: tuple[Any, ...], step_id: str, ref: ToolRef) -> ToolUse | None:
        name = str(ref.tool)
        if name in self.python_tools:
            return ToolUse(name, "python", name, ref.description, ref.cacheable)
        server, dot, _ = name.partition(".")
        if dot and server in self.mcp_servers:
            return ToolUse(name, "mcp", name, ref.description, ref.cacheable)
        if dot:
            known = ", ".join(sorted(self.mcp_servers)) or "none configured"
            self.add(where, f"step {step_id!r}: tool {name!r} names MCP server {server!r}, which is not configured",
                     f"add it under mcp_servers: in config.yml (servers: {known})")
        else:
            import difflib

            close = difflib.get_close_matches(name, list(self.python_tools), n=1)
            self.add(where, f"step {step_id!r}: unknown tool {name!r}",
                     f"did you mean {close[0]!r}?" if close else
                     "define it as a function in tools/<file>.py, or name an MCP tool as server.tool")
        return None

    def _check_role(self, where: tuple[Any, ...], step_id: str, role_name: str, role: Role, use: ToolUse) -> None:
        if use.kind in ("python", "mcp"):
            if not role.allows_tool(use.name):
                self.add(where, f"step {step_id!r}: role {role_name!r} does not allow tool {use.name!r}",
                         f"its tools: {', '.join(role.tools) or 'none'}; add the tool to the role or remove it")
        elif not role.allows_spawn(use.target):
            self.add(where, f"step {step_id!r}: role {role_name!r} may not spawn {use.target!r}",
                     f"its spawn: {', '.join(role.spawn) or 'none'}; add it to the role or remove it")
