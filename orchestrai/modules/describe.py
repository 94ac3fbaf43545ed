"""What each module says about itself: a description, the inputs it reads and the output_schema it gives.

Prompt modules: their front matter. Python modules: `description`, `inputs`, `output_schema` and
`calls_model` (a bool) attributes (on the class or instance, or at the top level of a
`modules/<name>.py` file), else the first paragraph of their docstring; a built-in that uses a
prompt of its own name falls back to that prompt's front matter. What `orchestrai modules`
shows and the planner is told (see orchestrai.catalog).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..api import ModuleKind
from .base import FunctionModule, ModuleInfo, ModuleRegistry, first_paragraph
from .chameleon import ChameleonModule


@dataclass(frozen=True)
class ModuleDescription:
    """One module as the catalog lists it."""

    name: str
    kind: ModuleKind
    source: str
    description: str | None = None
    inputs: tuple[str, ...] | None = None  # None: not declared
    output_schema: dict[str, Any] | None = None
    calls_model: bool | None = None  # None: not declared (a Python module may or may not call one)
    problem: str | None = None  # why it could not be read (a module that fails to import)

    def as_json(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "source": self.source, "description": self.description,
                "inputs": list(self.inputs) if self.inputs is not None else None,
                "output_schema": self.output_schema, "calls_model": self.calls_model,
                **({"problem": self.problem} if self.problem else {})}


def describe_all(registry: ModuleRegistry) -> list[ModuleDescription]:
    """Every module the registry sees, described (Python modules are imported, as validate does)."""
    return [describe(info, registry) for info in registry.all()]


def describe(info: ModuleInfo, registry: ModuleRegistry) -> ModuleDescription:
    if info.kind == "prompt":
        matter = ChameleonModule(info.name, Path(info.source)).front_matter
        return ModuleDescription(info.name, info.kind, info.source, matter.description, matter.inputs,
                                 matter.output_schema, calls_model=True)
    try:
        module = registry.instance(info.name)
    except Exception as exc:  # noqa: BLE001 - a project's module that fails to import is still listed
        return ModuleDescription(info.name, info.kind, info.source,
                                 problem=f"failed to load: {type(exc).__name__}: {exc}")
    description, inputs, schema = _declared(module)
    prompt = registry.prompt_path(info.name) if description is None or inputs is None else None
    if prompt is not None:  # a built-in's own prompt file (engineer.md) may say what the class does not
        matter = ChameleonModule(info.name, prompt).front_matter
        description, inputs = description or matter.description, inputs if inputs is not None else matter.inputs
    calls = getattr(module, "calls_model", None)
    return ModuleDescription(info.name, info.kind, info.source, description, inputs, schema,
                             calls if isinstance(calls, bool) else None)


def _declared(module: object) -> tuple[str | None, tuple[str, ...] | None, dict[str, Any] | None]:
    """(description, inputs, output_schema) from a Python module's attributes or docstring."""
    description = getattr(module, "description", None)
    if not isinstance(description, str) or not description.strip():
        own_doc = module.fn.__doc__ if isinstance(module, FunctionModule) else type(module).__doc__
        description = first_paragraph(own_doc)  # the class's own docstring, never an inherited one
    inputs = getattr(module, "inputs", None)
    if isinstance(inputs, str) or not isinstance(inputs, (list, tuple)) or \
            not all(isinstance(name, str) for name in inputs):
        inputs = None
    schema = getattr(module, "output_schema", None)
    return (" ".join(description.split()) if description else None,
            tuple(inputs) if inputs is not None else None,
            dict(schema) if isinstance(schema, Mapping) else None)

