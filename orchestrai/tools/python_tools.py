"""Python functions as tools: a project's `tools/<file>.py` (each public function) and the
`orchestrai.tools` entry points (a function, or a module whose public functions are tools).

A tool's JSON Schema comes from its signature and type hints (pydantic's TypeAdapter), its
description from its docstring; calls are validated and coerced by pydantic (`validate_call`), sync
functions run in a worker thread, and whatever a tool raises goes back to the model as an error.
"""

from __future__ import annotations

import asyncio
import importlib.util
import inspect
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from types import ModuleType
from typing import Any

from ..api import TOOL_ENTRY_POINT_GROUP, ToolError, ToolSpec
from ..plugins import entry_points
from .names import wire_name


@dataclass
class PythonTool:
    """One function offered as a tool."""

    spec: ToolSpec
    function: Callable[..., Any]
    source: str  # "path:line" or the entry point's value, for messages
    cacheable: bool = False  # `function.cacheable = True`: same arguments, same result (the call cache may answer)

    async def __call__(self, arguments: dict[str, Any]) -> Any:
        from pydantic import ValidationError, validate_call

        checked = validate_call(self.function)
        try:
            if inspect.iscoroutinefunction(self.function):
                return await checked(**arguments)
            return await asyncio.to_thread(checked, **arguments)
        except ValidationError as exc:
            raise ToolError(f"tool {self.spec.name!r}: bad arguments: {_first_error(exc)}") from None


@dataclass
class ToolProblem:
    """A function that cannot be a tool (its signature has no JSON Schema), or a file that fails to import."""

    name: str
    source: str
    message: str


@dataclass
class PythonTools:
    """The Python tools of one project, found on first use (importing a project's tools runs its code)."""

    project_dirs: list[Path]
    plugins: bool = True
    problems: list[ToolProblem] = field(default_factory=list)

    @cached_property
    def by_name(self) -> dict[str, PythonTool]:
        found: dict[str, PythonTool] = {}
        for folder in self.project_dirs:
            for path in sorted((folder / "tools").glob("*.py")) if (folder / "tools").is_dir() else []:
                if not path.name.startswith("_"):
                    self._add_module(found, path)
        if self.plugins:
            for entry in entry_points(TOOL_ENTRY_POINT_GROUP):
                self._add_entry_point(found, entry.name, entry.value, entry.load)
        return found

    def _add_module(self, found: dict[str, PythonTool], path: Path) -> None:
        try:
            module = _import_file(path)
        except Exception as exc:  # noqa: BLE001 - a project's tool file that fails to import is the user's to fix
            self.problems.append(ToolProblem(path.stem, str(path), f"{type(exc).__name__}: {exc}"))
            return
        for name, function in _public_functions(module):
            self._add(found, name, function, f"{path}:{_line(function)}")

    def _add_entry_point(self, found: dict[str, PythonTool], name: str, value: str, load: Callable[[], Any]) -> None:
        try:
            target = load()
        except Exception as exc:  # noqa: BLE001 - a broken plugin is named, not a crash
            self.problems.append(ToolProblem(name, value, f"failed to load: {type(exc).__name__}: {exc}"))
            return
        if isinstance(target, ModuleType):
            for function_name, function in _public_functions(target):
                self._add(found, function_name, function, f"{value}:{function_name}")
        elif callable(target):
            self._add(found, name, target, value)

    def _add(self, found: dict[str, PythonTool], name: str, function: Callable[..., Any], source: str) -> None:
        if name in found:  # the project's folders come first: theirs win, as with modules
            return
        try:
            parameters = _parameters_schema(function)
        except Exception as exc:  # noqa: BLE001 - pydantic's many schema errors: all mean "not a tool"
            self.problems.append(ToolProblem(name, source, f"its signature has no JSON Schema: {exc}"))
            return
        description = (inspect.getdoc(function) or "").split("\n\n")[0].strip() or f"The {name} function."
        spec = ToolSpec(name, wire_name(name), description, parameters)
        found[name] = PythonTool(spec, function, source, bool(getattr(function, "cacheable", False)))


def _parameters_schema(function: Callable[..., Any]) -> dict[str, Any]:
    from pydantic import TypeAdapter

    schema: dict[str, Any] = TypeAdapter(function).json_schema()  # type: ignore[arg-type]  # a callable: its arguments
    schema.setdefault("type", "object")
    schema.setdefault("properties", {})
    for prop in schema["properties"].values():
        if isinstance(prop, dict):
            prop.pop("title", None)  # "A" for `a`: noise in every request
    return schema


def _public_functions(module: ModuleType) -> list[tuple[str, Callable[..., Any]]]:
    """Functions defined in the module itself (not imported ones), not starting with '_'."""
    return [(name, value) for name, value in vars(module).items()
            if not name.startswith("_") and inspect.isfunction(value) and value.__module__ == module.__name__]


def _import_file(path: Path) -> ModuleType:
    name = f"orchestrai_project_tools.{path.stem}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def _line(function: Callable[..., Any]) -> int:
    try:
        return inspect.getsourcelines(function)[1]
    except (OSError, TypeError):
        return 0


def _first_error(exc: Any) -> str:
    errors = exc.errors(include_url=False)
    if not errors:
        return str(exc)
    first = errors[0]
    where = ".".join(str(part) for part in first.get("loc", ()))
    return f"{where}: {first.get('msg')}" if where else str(first.get("msg"))
