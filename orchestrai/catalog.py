"""The catalog of a project: what a pipeline (or the planner) can use.

Modules with their descriptions, inputs and output schemas (orchestrai.modules.describe), the
sub-pipelines in the project's `pipelines/` folders with their run inputs and final outputs, and
tools. `orchestrai modules --json` prints it; `orchestrai plan` hands it to the planner model.

Tools come from the caller (`catalog(project, tools=[...])`: `ToolSpec`s or mappings with name,
description, parameters), so the catalog does not need to start MCP servers itself.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .api import ToolSpec
from .modules.describe import ModuleDescription, describe_all
from .pipeline.graph import start_inputs
from .project import Project, project_dirs

PIPELINE_SUFFIXES = (".yml", ".yaml")


@dataclass(frozen=True)
class PipelineEntry:
    """A pipeline file that validates, as a sub-pipeline: its run inputs and its final outputs."""

    path: Path
    name: str
    description: str | None
    inputs: tuple[str, ...]  # its start_module outputs: bound by name (or `with:`) from the calling step
    outputs: tuple[str, ...]  # the outputs nobody in it consumes: what the calling step gets

    def as_json(self, base: Path) -> dict[str, Any]:
        return {"path": shown_path(self.path, base), "name": self.name, "description": self.description,
                "inputs": list(self.inputs), "outputs": list(self.outputs)}


@dataclass
class Catalog:
    """Everything a pipeline in this project can use."""

    base: Path  # the project folder, paths are shown relative to it
    modules: list[ModuleDescription]
    pipelines: list[PipelineEntry]
    tools: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[dict[str, str]] = field(default_factory=list)  # pipeline files with problems, and the first

    def module(self, name: str) -> ModuleDescription | None:
        return next((m for m in self.modules if m.name == name), None)

    def as_json(self) -> dict[str, Any]:
        return {"modules": [m.as_json() for m in self.modules],
                "pipelines": [p.as_json(self.base) for p in self.pipelines],
                "tools": list(self.tools),
                **({"invalid_pipelines": list(self.skipped)} if self.skipped else {})}


def catalog(project: Project, tools: Sequence[ToolSpec | Mapping[str, Any]] | None = None, *,
            exclude: Sequence[Path] = ()) -> Catalog:
    """The project's catalog; `exclude`: pipeline files to leave out (the file a plan will replace).
    `tools`: default the project's Python tools and one entry per configured MCP server."""
    if tools is None:
        tools = project_tools(project)
    base = project.config.base_dir.resolve()
    left_out = {path.resolve() for path in exclude}
    pipelines, skipped = [], []
    for path in pipeline_files(project):
        if path in left_out:
            continue
        graph, problems = project.check(path)
        if graph is None:
            skipped.append({"path": shown_path(path, base), "problem": str(problems[0]) if problems else "invalid"})
            continue
        outputs = tuple(graph.steps[step_id].output_name for step_id in graph.sinks())
        pipelines.append(PipelineEntry(path, graph.pipeline.name, graph.pipeline.description,
                                       tuple(start_inputs(graph.pipeline)), outputs))
    return Catalog(base, describe_all(project.registry), pipelines, [tool_entry(t) for t in tools], skipped)


def project_tools(project: Project) -> list[ToolSpec | Mapping[str, Any]]:
    """The Python tools (project, plugins, built-ins) and the MCP servers, whose tools are only known once
    they start (so a plan names them as server.tool from the server's own documentation)."""
    found: list[ToolSpec | Mapping[str, Any]] = [tool.spec for tool in project.registry.tools.by_name.values()]
    for server in sorted(project.config.file.mcp_servers):
        found.append({"name": f"{server}.*", "description": f"the tools of MCP server {server!r}, named "
                      f"{server}.<tool> (listed when the server starts)"})
    return found


def pipeline_files(project: Project) -> list[Path]:
    """`pipelines/*.yml` and `*.yaml` beside the config, then in the current directory (each file once)."""
    found: list[Path] = []
    for folder in project_dirs(project.config):
        directory = folder / "pipelines"
        if directory.is_dir():
            for path in sorted(directory.iterdir()):
                visible = path.suffix in PIPELINE_SUFFIXES and not path.name.startswith(".")
                if visible and path.is_file() and path.resolve() not in found:
                    found.append(path.resolve())
    return found


def tool_entry(tool: ToolSpec | Mapping[str, Any]) -> dict[str, Any]:
    """A tool as the catalog lists it: the name a step's `tools:` uses, its description and arguments."""
    if isinstance(tool, ToolSpec):
        return {"name": tool.name, "description": tool.description, "parameters": tool.parameters}
    return {"name": str(tool["name"]), "description": tool.get("description"), "parameters": tool.get("parameters")}


def shown_path(path: Path, base: Path) -> str:
    """`path` relative to the project folder when inside it (as a pipeline names files), else as it is."""
    try:
        return path.resolve().relative_to(base).as_posix()
    except ValueError:
        return str(path)
