"""The registry that finds a step's module by name (the Module protocol is in orchestrai.api).

Lookup order for a step's `module:` name:
1. Python modules: a project's `modules/<name>.py`, then plugins (entry-point group
   `orchestrai.modules`), then the built-ins. Python wins over a prompt of the same name, so a
   Python module can use a prompt file of its own name.
2. Chameleon modules: `system_prompts/<name>.md` or `.txt` in the project, then those the package ships.
What a name hides is kept in `ModuleInfo.shadows` (`orchestrai modules` shows it). A name that
is not a safe file name (see `orchestrai.names`) resolves to nothing, whatever the folders hold.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import sys
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..api import MODULE_ENTRY_POINT_GROUP, Module, ModuleKind, PipelineError, StepContext
from ..names import MODULE_NAME_HINT, MODULE_NAME_RULE, is_module_name
from ..plugins import Plugin, entry_points

if TYPE_CHECKING:
    from ..tools.python_tools import PythonTools

ENTRY_POINT_GROUP = MODULE_ENTRY_POINT_GROUP
# What a `modules/<name>.py` file may declare at its top level beside `async def run` (or `module = ...`).
DECLARED_ATTRIBUTES = ("output_schema", "description", "inputs", "calls_model")
PROMPT_SUFFIXES = (".md", ".txt")
BUILTINS: dict[str, str] = {
    "start_module": "orchestrai.modules.start:StartModule",
    "engineer": "orchestrai.modules.engineering.engineer:Engineer",
    "debugger": "orchestrai.modules.engineering.debugger:Debugger",
    "modify_codebase": "orchestrai.modules.engineering.debugger:ModifyCodebase",
    "create_readme": "orchestrai.modules.engineering.readme:CreateReadme",
}


@dataclass(frozen=True)
class ModuleInfo:
    """Where a module name resolves to; loading the code waits until a run needs it."""

    name: str
    kind: ModuleKind
    source: str  # a file path or "package:attribute"
    load: Callable[[], Module]
    shadows: tuple[ModuleInfo, ...] = ()  # modules of the same name this one hides, highest first

    @property
    def uses_llm(self) -> bool:
        return self.kind == "prompt"


def shipped_prompt_dir() -> Path:
    """Prompts inside the installed package; falls back to the source checkout's system_prompts/."""
    package = Path(__file__).resolve().parent.parent
    inside = package / "system_prompts"
    return inside if inside.is_dir() else package.parent / "system_prompts"


class ModuleRegistry:
    """Finds modules by name for one project (its folders are searched before the package's)."""

    def __init__(self, project_dirs: list[Path], *, plugins: bool = True) -> None:
        self.project_dirs = _unique_dirs(project_dirs)
        self._use_plugins = plugins
        self._loaded: dict[str, Module] = {}

    @cached_property
    def tools(self) -> PythonTools:
        """The project's Python tools (`tools/*.py`) and the `orchestrai.tools` plugins, found on first use."""
        from ..tools.python_tools import PythonTools

        return PythonTools(self.project_dirs, plugins=self._use_plugins)

    def resolve(self, name: str) -> ModuleInfo | None:
        """The module called `name`, or None (always None for a name that is not a safe file name)."""
        if not is_module_name(name):  # library callers skip validation: never let a name walk out of a folder
            return None
        return self._python_modules.get(name) or self._prompt_module(name)

    def require(self, name: str, *, at: str = "", step: str = "") -> ModuleInfo:
        info = self.resolve(name)
        if info is None:
            raise PipelineError(f"{at}: {self.unknown_message(name, step)}", hint=self.unknown_hint(name))
        return info

    def unknown_message(self, name: str, step: str) -> str:
        if not is_module_name(name):
            return f"step {step!r}: {name!r} is not a module name: {MODULE_NAME_RULE}"
        return f"step {step!r}: unknown module {name!r} (neither a Python module nor a prompt file)"

    def unknown_hint(self, name: str) -> str:
        import difflib

        if not is_module_name(name):
            return MODULE_NAME_HINT  # never "create <a path outside system_prompts/>"
        close = difflib.get_close_matches(name, [m.name for m in self.all()], n=1)
        folder = self.project_dirs[0] / "system_prompts" if self.project_dirs else Path("system_prompts")
        return (f"did you mean {close[0]!r}? " if close else "") + f"or create {folder / (name + '.md')}"

    def instance(self, name: str) -> Module:
        """The loaded module object, imported once per registry."""
        if name not in self._loaded:
            info = self.resolve(name)
            if info is None:
                raise PipelineError(self.unknown_message(name, name))
            self._loaded[name] = info.load()
        return self._loaded[name]

    def prompt_path(self, name: str) -> Path | None:
        """The first `system_prompts/<name>.md` or `.txt` (project folders first), or None."""
        if not is_module_name(name):
            return None
        for folder in self._prompt_dirs:
            for suffix in PROMPT_SUFFIXES:
                candidate = folder / f"{name}{suffix}"
                if candidate.is_file():
                    return candidate
        return None

    def all(self) -> list[ModuleInfo]:
        """Every module this registry can see, each name once, as `resolve` finds it (with what it shadows)."""
        seen: dict[str, ModuleInfo] = dict(self._python_modules)
        prompts: dict[str, list[ModuleInfo]] = {}  # every prompt file by name, in lookup order
        for folder in self._prompt_dirs:
            for path in sorted(folder.glob("*")):
                if path.suffix in PROMPT_SUFFIXES and is_module_name(path.stem) and path.is_file():
                    prompts.setdefault(path.stem, []).append(_prompt_info(path.stem, path))
        for name, found in prompts.items():
            winner = seen.get(name)
            if winner is None:
                # A project's unchanged copy of a shipped prompt hides nothing worth a line.
                hidden = tuple(p for p in found[1:] if not _same_file_content(found[0].source, p.source))
                seen[name] = replace(found[0], shadows=hidden)
            elif name not in BUILTINS:  # a built-in's prompt of its own name is its own, not hidden
                seen[name] = replace(winner, shadows=(*winner.shadows, found[0]))
        return sorted(seen.values(), key=lambda m: (m.kind, m.name))

    @cached_property
    def _prompt_dirs(self) -> list[Path]:
        dirs = [d / "system_prompts" for d in self.project_dirs] + [shipped_prompt_dir()]
        return [d for d in _unique_dirs(dirs) if d.is_dir()]

    def _prompt_module(self, name: str) -> ModuleInfo | None:
        path = self.prompt_path(name)
        return None if path is None else _prompt_info(name, path)

    @cached_property
    def _python_modules(self) -> dict[str, ModuleInfo]:
        """Python modules by name, in lookup order: the project's, then plugins, then built-ins; the first wins."""
        found: dict[str, ModuleInfo] = {}
        for info in (*self._project_modules(), *self._plugin_modules(), *_builtin_modules()):
            winner = found.get(info.name)
            if winner is None:
                found[info.name] = info
            else:  # hidden: kept only to say so (`orchestrai modules`)
                found[info.name] = replace(winner, shadows=(*winner.shadows, info))
        return found

    def _project_modules(self) -> list[ModuleInfo]:
        found = []
        for folder in self.project_dirs:
            modules_dir = folder / "modules"
            if modules_dir.is_dir():
                for path in sorted(modules_dir.glob("*.py")):
                    if not path.name.startswith("_") and is_module_name(path.stem):
                        found.append(ModuleInfo(path.stem, "project", str(path), _file_loader(path)))
        return found

    def _plugin_modules(self) -> list[ModuleInfo]:
        if not self._use_plugins:
            return []
        return [ModuleInfo(entry.name, "plugin", entry.value, _as_module_loader(entry.load))
                for entry in _entry_points() if is_module_name(entry.name)]


def _builtin_modules() -> list[ModuleInfo]:
    return [ModuleInfo(name, "builtin", target, _importer(target)) for name, target in BUILTINS.items()]


def _same_file_content(first: str, second: str) -> bool:
    try:
        return Path(first).read_bytes() == Path(second).read_bytes()
    except OSError:
        return False


def _prompt_info(name: str, path: Path) -> ModuleInfo:
    def load() -> Module:
        from .chameleon import ChameleonModule

        return ChameleonModule(name, path)

    return ModuleInfo(name, "prompt", str(path), load)


def _unique_dirs(dirs: list[Path]) -> list[Path]:
    out: list[Path] = []
    for d in dirs:
        resolved = d.resolve()
        if resolved not in out:
            out.append(resolved)
    return out


def _entry_points() -> list[Plugin]:
    """The plugins: entry points of group `orchestrai.modules` (read cheaply, see orchestrai.plugins)."""
    return entry_points(ENTRY_POINT_GROUP)


def _importer(target: str) -> Callable[[], Module]:
    module_name, _, attribute = target.partition(":")
    return _as_module_loader(lambda: getattr(importlib.import_module(module_name), attribute))


def _file_loader(path: Path) -> Callable[[], Module]:
    def load() -> Any:
        spec = importlib.util.spec_from_file_location(f"orchestrai_project_modules.{path.stem}", path)
        if spec is None or spec.loader is None:
            raise PipelineError(f"{path}: cannot import this file as a module")
        code = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = code
        spec.loader.exec_module(code)
        obj = getattr(code, "module", None) or getattr(code, "run", None)
        if obj is None:
            raise PipelineError(f"{path}: defines neither `async def run(ctx, inputs)` nor `module = ...`",
                                hint="see 'Writing a module' in the README")
        if inspect.isfunction(obj):  # what the file declares at its top level, for its run and the catalog
            for attribute in DECLARED_ATTRIBUTES:
                if getattr(code, attribute, None) is not None and getattr(obj, attribute, None) is None:
                    setattr(obj, attribute, getattr(code, attribute))
            if getattr(obj, "description", None) is None and not obj.__doc__ and code.__doc__:
                obj.description = first_paragraph(code.__doc__)  # type: ignore[attr-defined]  # the file's docstring
        return obj

    return _as_module_loader(load)


def _as_module_loader(load_object: Callable[[], Any]) -> Callable[[], Module]:
    """Accept an async function, a class with async run(), or an instance of one."""

    def load() -> Module:
        obj = load_object()
        if inspect.isclass(obj):
            obj = obj()
        if inspect.iscoroutinefunction(obj):
            return FunctionModule(obj)
        if isinstance(obj, Module) and inspect.iscoroutinefunction(obj.run):
            return obj
        raise PipelineError(f"{obj!r} is not a module: it needs an async run(ctx, inputs)")

    return load


def first_paragraph(doc: str | None) -> str | None:
    """A docstring's first paragraph on one line (what `orchestrai modules` shows), or None."""
    if not doc or not doc.strip():
        return None
    paragraph = inspect.cleandoc(doc).split("\n\n", 1)[0]
    return " ".join(paragraph.split())


class FunctionModule:
    """Adapts a plain `async def run(ctx, inputs)` function to the Module protocol."""

    def __init__(self, fn: Callable[..., Any]) -> None:
        self.fn = fn
        # The JSON Schema its output matches, when the function (or its file) declares one.
        self.output_schema: dict[str, Any] | None = getattr(fn, "output_schema", None)
        # What the catalog says about it: attributes, else the function's (or its file's) docstring.
        self.description: str | None = getattr(fn, "description", None) or first_paragraph(fn.__doc__)
        self.inputs: Any = getattr(fn, "inputs", None)
        self.calls_model: Any = getattr(fn, "calls_model", None)

    async def run(self, ctx: StepContext, inputs: dict[str, Any]) -> Any:
        return await self.fn(ctx, inputs)
