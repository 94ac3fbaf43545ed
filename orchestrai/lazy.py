"""Names a package exports on first use (`orchestrai`, `orchestrai.api`), so importing it stays cheap."""

from __future__ import annotations

from importlib import import_module
from typing import Any


def lazy_attribute(namespace: dict[str, Any], exports: dict[str, str], name: str) -> Any:
    """For a module's `__getattr__`: `name` imported from its module in `exports`, then kept in `namespace`."""
    if name not in exports:
        raise AttributeError(f"module {namespace['__name__']!r} has no attribute {name!r}")
    value = getattr(import_module(exports[name]), name)
    namespace[name] = value  # later reads find it without calling __getattr__
    return value
