"""The package's shape: no import cycle (type-only and function-level imports included), and plugins'
code (modules, providers, hooks) written against orchestrai.api, not the engine."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "orchestrai"


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(path): path for path in PACKAGE.rglob("*.py")}


def imports_of(path: Path, known: dict[str, Path]) -> set[str]:
    """Every orchestrai module `path` imports, wherever the import statement is (TYPE_CHECKING, a function)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.split(".")[0] == "orchestrai")
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")[: len(package.split(".")) - node.level + 1] if node.level else []
            target = ".".join([*base, *(node.module.split(".") if node.module else [])])
            if target.split(".")[0] != "orchestrai":
                continue
            for alias in node.names:  # `from . import legacy_config` imports a module, not a name
                found.add(f"{target}.{alias.name}" if f"{target}.{alias.name}" in known else target)
    return {target for target in found if target in known and target != name}


def import_graph() -> dict[str, set[str]]:
    known = modules()
    return {name: imports_of(path, known) for name, path in known.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle, as the list of modules along it, or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for target in sorted(graph[node]):
            if state.get(target) == 1:
                return path[path.index(target):] + [target]
            if target not in state and (cycle := visit(target)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_walk_sees_type_only_and_function_level_imports() -> None:
    graph = import_graph()
    assert "orchestrai.api" in graph["orchestrai.modules.chameleon"]  # a top-level import
    assert "orchestrai.pipeline.spec" in graph["orchestrai.config"]  # only under TYPE_CHECKING
    assert "orchestrai.providers.registry" in graph["orchestrai.config"]  # inside a function
    assert "orchestrai.legacy_config" in graph["orchestrai.config"]  # `from . import legacy_config as legacy`


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycle() -> None:
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


# What plugin-side code may not reach into: the engine's internals, the config file's schema, the CLI.
FORBIDDEN_FOR_PLUGINS = ("orchestrai.engine", "orchestrai.config", "orchestrai.cli", "orchestrai.pipeline.loader",
                         "orchestrai.project")


@pytest.mark.parametrize("folder", ["modules", "providers", "observe", "tools"])
def test_modules_providers_and_hooks_are_written_against_the_api(folder: str) -> None:
    graph = import_graph()
    allowed = {"orchestrai.engine.redact"} if folder == "observe" else set()  # the hooks' own secrets scrubber
    offenders = {name: sorted(t for t in targets if t.startswith(FORBIDDEN_FOR_PLUGINS) and t not in allowed)
                 for name, targets in graph.items() if name.startswith(f"orchestrai.{folder}.")}
    offenders = {name: targets for name, targets in offenders.items() if targets}
    # The registry and the pool are the engine's side of the plugin seams, not plugins.
    offenders.pop("orchestrai.providers.pool", None)
    assert offenders == {}


def test_the_api_depends_on_nothing_but_leaf_modules() -> None:
    graph = import_graph()
    reachable: set[str] = set()
    todo = [name for name in graph if name.startswith("orchestrai.api")]
    while todo:
        name = todo.pop()
        for target in graph[name] - reachable:
            reachable.add(target)
            todo.append(target)
    assert not {name for name in reachable if name.startswith(("orchestrai.engine", "orchestrai.modules",
                                                               "orchestrai.providers", "orchestrai.observe",
                                                               "orchestrai.cli", "orchestrai.config"))}


def test_the_engine_never_imports_tracing_or_ui_libraries() -> None:
    """No engine module imports OpenTelemetry, wandb or rich, nor reaches the UI (progress, the CLI); the
    tracing hooks the runner makes from config (OtelHook, like Webhooks) import OpenTelemetry only inside
    functions, when one is made, so a run without `otel:` never loads it."""
    graph = import_graph()
    reached: set[str] = set()
    todo = [name for name in graph if name.startswith("orchestrai.engine")]
    while todo:
        for target in graph[todo.pop()] - reached:
            reached.add(target)
            todo.append(target)
    assert not {name for name in reached if name.startswith(("orchestrai.observe.progress", "orchestrai.cli"))}
    for name in (n for n in graph if n.startswith("orchestrai.engine")):
        assert not third_party(modules()[name], top_level_only=False) & {"opentelemetry", "wandb", "rich"}, name
    for name in ("orchestrai.observe.otel_hook", "orchestrai.observe.spans", "orchestrai.otelconfig"):
        assert "opentelemetry" not in third_party(modules()[name], top_level_only=True), name


def third_party(path: Path, *, top_level_only: bool) -> set[str]:
    """The top-level package names `path` imports (only its module-level statements, or every one)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    names: set[str] = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module.split(".")[0])
    return names
