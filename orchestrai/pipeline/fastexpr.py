"""A fast path for the common `when`/`until` expressions: `review.score >= 8`, `kind.kind == 'general'`,
`plan.items[0].done and not stop`, `review is defined`.

jinja2 builds a new template context on every call of a compiled expression (~15 µs), which was a
sixth of a loop iteration's cost. Expressions made only of names, constants, field and index
access on dicts and lists, comparisons, `and`/`or`/`not` and the tests `defined`, `undefined` and
`none` are turned into plain closures once; they give the same answers as jinja2 (a missing field
is an error unless tested with `defined`). Any other expression, or a value these closures do not
know how to read (an object, a dict field named like a dict method), goes through jinja2.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping
from typing import Any

Scope = Mapping[str, Any]
Compiled = Callable[[Scope], Any]


class Fallback(Exception):
    """This expression, or this value, is for jinja2 to evaluate."""


class Missing:
    """A name or field that is not there: only `is defined` / `is undefined` may look at it."""

    __slots__ = ("what",)

    def __init__(self, what: str) -> None:
        self.what = what


_COMPARE: dict[str, Callable[[Any, Any], Any]] = {
    "eq": operator.eq, "ne": operator.ne, "lt": operator.lt, "lteq": operator.le, "gt": operator.gt,
    "gteq": operator.ge, "in": lambda a, b: a in b, "notin": lambda a, b: a not in b,
}
_DICT_ATTRIBUTES = frozenset(dir(dict))


def compile_fast(node: Any) -> Compiled | None:
    """A closure computing the expression whose jinja2 AST is `node`, or None when it is not in the subset."""
    try:
        compiled = _compile(node)
    except Fallback:
        return None
    return lambda scope: _value(compiled(scope))


def _value(value: Any) -> Any:
    if isinstance(value, Missing):
        raise Fallback(value.what)  # let jinja2 raise its own UndefinedError, with its own message
    return value


def _compile(node: Any) -> Compiled:
    import jinja2.nodes as nodes

    if isinstance(node, nodes.Const) and isinstance(node.value, (str, int, float, bool, type(None))):
        constant = node.value
        return lambda scope: constant
    if isinstance(node, nodes.Name) and node.ctx == "load":
        name = node.name
        if name in ("true", "false", "none", "True", "False", "None"):
            raise Fallback(name)
        return lambda scope: scope[name] if name in scope else Missing(name)
    if isinstance(node, nodes.Getattr):
        return _field(_compile(node.node), node.attr)
    if isinstance(node, nodes.Getitem) and isinstance(node.arg, nodes.Const):
        return _field(_compile(node.node), node.arg.value)
    if isinstance(node, nodes.Compare) and len(node.ops) == 1 and node.ops[0].op in _COMPARE:
        left, right, compare = _compile(node.expr), _compile(node.ops[0].expr), _COMPARE[node.ops[0].op]
        return lambda scope: compare(_value(left(scope)), _value(right(scope)))
    if isinstance(node, (nodes.And, nodes.Or)):
        return _logic(node)
    if isinstance(node, nodes.Not):
        inner = _compile(node.node)
        return lambda scope: not _value(inner(scope))
    if isinstance(node, nodes.Test) and not node.args and not node.kwargs and node.name in ("defined", "undefined",
                                                                                            "none"):
        return _test(_compile(node.node), node.name)
    if isinstance(node, (nodes.List, nodes.Tuple)):
        items = [_compile(item) for item in node.items]
        return lambda scope: [_value(item(scope)) for item in items]
    raise Fallback(type(node).__name__)


def _field(base: Compiled, key: Any) -> Compiled:
    def read(scope: Scope) -> Any:
        value = base(scope)
        if isinstance(value, Missing):
            return value
        if isinstance(value, dict) and isinstance(key, str) and key not in _DICT_ATTRIBUTES:
            return value[key] if key in value else Missing(key)
        if isinstance(value, list) and isinstance(key, int) and not isinstance(key, bool):
            return value[key] if -len(value) <= key < len(value) else Missing(str(key))
        raise Fallback(f"reading {key!r} of a {type(value).__name__}")  # jinja2's rules for other values

    return read


def _logic(node: Any) -> Compiled:
    import jinja2.nodes as nodes

    left, right = _compile(node.left), _compile(node.right)
    if isinstance(node, nodes.And):
        return lambda scope: _value(left(scope)) and _value(right(scope))
    return lambda scope: _value(left(scope)) or _value(right(scope))


def _test(inner: Compiled, name: str) -> Compiled:
    if name == "none":
        return lambda scope: _value(inner(scope)) is None
    defined = name == "defined"
    return lambda scope: (not isinstance(inner(scope), Missing)) == defined
