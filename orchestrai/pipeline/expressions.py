"""References (`plan.topics`, `plan.items[0].title`) and `when`/`until` expressions over step outputs.

Expressions are Jinja2 expressions in an immutable sandbox with StrictUndefined: a pipeline may be
written by a model, so an expression can read the values it is given and call nothing unsafe, and
a misspelt field is an error, not a silent false.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import cache
from typing import TYPE_CHECKING, Any

from .fastexpr import Fallback, compile_fast

if TYPE_CHECKING:
    import jinja2

Part = str | int  # a field name or a list index


class ExpressionFailed(Exception):
    """An expression or reference could not be evaluated (the message names what and why)."""


@dataclass(frozen=True)
class Reference:
    """An output name and a path into its value."""

    root: str
    path: tuple[Part, ...] = ()

    def __str__(self) -> str:
        return self.root + "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in self.path)

    def resolve(self, outputs: Mapping[str, Any]) -> Any:
        """The referenced value; ExpressionFailed naming the part that is not there."""
        if self.root not in outputs:
            raise ExpressionFailed(f"{self}: {self.root!r} has no value (its step did not complete)")
        value = outputs[self.root]
        walked = self.root
        for part in self.path:
            value = _step_into(value, part, walked, self)
            walked += f"[{part}]" if isinstance(part, int) else f".{part}"
        return value


def _step_into(value: Any, part: Part, walked: str, ref: Reference) -> Any:
    if isinstance(part, int):
        if not isinstance(value, list):
            raise ExpressionFailed(f"{ref}: {walked} is {_kind(value)}, not a list")
        if part >= len(value):
            raise ExpressionFailed(f"{ref}: {walked} has {len(value)} items, no [{part}]")
        return value[part]
    if not isinstance(value, dict):
        raise ExpressionFailed(f"{ref}: {walked} is {_kind(value)}, not a mapping with field {part!r}")
    if part not in value:
        fields = ", ".join(map(repr, list(value)[:10])) or "none"
        raise ExpressionFailed(f"{ref}: {walked} has no field {part!r} (its fields: {fields})")
    return value[part]


def describe_type(value: Any) -> str:
    """A value's type as a person reads it: "a dict", "a string", "None"."""
    if value is None:
        return "None"
    names = {dict: "a dict", list: "a list", str: "a string", int: "an integer", float: "a number", bool: "a boolean"}
    return names.get(type(value), f"a {type(value).__name__}")


_kind = describe_type


_PART = re.compile(r"\.([A-Za-z_][A-Za-z0-9_-]*)|\[(\d+)\]")


def parse_reference(text: str, known: Mapping[str, Any] | set[str] | frozenset[str]) -> Reference | None:
    """`plan.items[0].title` as a Reference; the root is the longest known output name it starts with
    (output names may contain dots). None when the text is not a reference to a known name."""
    text = text.strip()
    roots = [name for name in known if text == name or text.startswith((name + ".", name + "["))]
    if not roots:
        return None
    root = max(roots, key=len)
    rest, path, position = text[len(root):], [], 0
    while position < len(rest):
        match = _PART.match(rest, position)
        if match is None:
            return None
        path.append(match.group(1) if match.group(1) is not None else int(match.group(2)))
        position = match.end()
    return Reference(root, tuple(path))


def reference_root(text: str) -> str:
    """The output name a reference most likely starts with, for messages about unknown names."""
    return re.split(r"[.\[]", text.strip(), maxsplit=1)[0]


@dataclass(frozen=True)
class Expression:
    """A `when`/`until` expression: its source, the references it reads, and evaluation."""

    source: str
    references: tuple[Reference, ...] = field(default=())

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(ref.root for ref in self.references))

    def evaluate(self, scope: Mapping[str, Any]) -> bool:
        """The expression's truth over `scope` (output name -> value); ExpressionFailed when it raises."""
        fast = _fast(self.source)
        try:
            if fast is not None:
                try:
                    return bool(fast(scope))
                except Fallback:
                    pass  # a value the fast path does not read as jinja2 would: jinja2 decides
            return bool(_compiled(self.source)(**scope))
        except Exception as exc:  # noqa: BLE001 - any failure of user text is the step's error
            raise ExpressionFailed(f"{self.source!r} raised {type(exc).__name__}: {exc}") from None


def parse_expression(source: str) -> Expression:
    """The expression and the references it reads; ExpressionFailed with jinja2's message when it does not parse."""
    import jinja2

    environment = _environment()
    try:
        parser = jinja2.parser.Parser(environment, source, state="variable")
        node = parser.parse_expression()
        if not parser.stream.eos:
            raise jinja2.TemplateSyntaxError("unexpected text after the expression", parser.stream.current.lineno)
    except jinja2.TemplateSyntaxError as exc:
        raise ExpressionFailed(f"{source!r} does not parse: {exc.message}") from None
    known_globals = set(environment.globals) | set(environment.tests) | set(environment.filters)
    found = [ref for ref in _references(node) if ref.root not in known_globals]
    return Expression(source, tuple(dict.fromkeys(found)))


def _references(node: jinja2.nodes.Node) -> Iterator[Reference]:
    """Each Name the expression loads, with the constant attribute/index path applied to it."""
    import jinja2.nodes as nodes

    path: list[Part] = []
    base = node
    while isinstance(base, (nodes.Getattr, nodes.Getitem)):
        if isinstance(base, nodes.Getattr):
            path.insert(0, base.attr)
        elif isinstance(base.arg, nodes.Const) and isinstance(base.arg.value, (int, str)) \
                and not isinstance(base.arg.value, bool):
            path.insert(0, base.arg.value)
        else:
            yield from _references(base.arg)
            path.clear()  # a computed index: only the part before it can be checked
        base = base.node
    if isinstance(base, nodes.Name) and base.ctx == "load":
        yield Reference(base.name, tuple(path))
        return
    for child in base.iter_child_nodes():
        yield from _references(child)


@cache
def _environment() -> jinja2.Environment:
    import jinja2
    import jinja2.sandbox

    return jinja2.sandbox.ImmutableSandboxedEnvironment(undefined=jinja2.StrictUndefined)


@cache
def _fast(source: str) -> Callable[[Mapping[str, Any]], Any] | None:
    """The expression as a plain closure when it is in fastexpr's subset (jinja2 costs ~15 µs a call)."""
    import jinja2

    try:
        parser = jinja2.parser.Parser(_environment(), source, state="variable")
        node = parser.parse_expression()
    except jinja2.TemplateSyntaxError:
        return None
    return compile_fast(node) if parser.stream.eos else None


@cache
def _compiled(source: str) -> Callable[..., Any]:
    return _environment().compile_expression(source, undefined_to_none=False)


def schema_at(schema: Mapping[str, Any] | None, path: tuple[Part, ...],
              root: str = "the output") -> tuple[Mapping[str, Any] | None, str | None]:
    """The sub-schema a path reaches, and a problem when the schema says the path cannot exist.

    (None, None) when the schema does not say (no schema, a $ref, a combinator): nothing to check.
    """
    walked = root
    for part in path:
        if schema is None:
            return None, None
        kind = schema.get("type")
        if isinstance(part, int):
            if kind is not None and kind != "array":
                return None, f"{walked} is {_schema_kind(kind)} in the schema, not a list"
            items = schema.get("items")
            schema = items if isinstance(items, dict) else None
        else:
            if kind is not None and kind != "object":
                return None, f"{walked} is {_schema_kind(kind)} in the schema, not a mapping"
            properties = schema.get("properties")
            if isinstance(properties, dict) and part in properties:
                schema = properties[part]
            elif isinstance(properties, dict) and schema.get("additionalProperties") is False:
                close = difflib.get_close_matches(part, list(properties), n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else f" (its fields: {', '.join(properties)})"
                return None, f"{walked} has no field {part!r} in the schema{hint}"
            elif isinstance(properties, dict) and properties and "additionalProperties" not in schema:
                close = difflib.get_close_matches(part, list(properties), n=1)
                if close:  # open objects may hold anything; a near miss of a declared field is a typo
                    return None, f"{walked} has no field {part!r} in the schema (did you mean " \
                                 f"{close[0]!r}?)"
                return None, None
            else:
                extra = schema.get("additionalProperties")
                schema = extra if isinstance(extra, dict) else None
        walked += f"[{part}]" if isinstance(part, int) else f".{part}"
    return schema, None


def _schema_kind(kind: Any) -> str:
    names = {"object": "a mapping", "array": "a list", "string": "a string", "integer": "an integer",
             "number": "a number", "boolean": "a boolean", "null": "null"}
    return names.get(kind, str(kind)) if isinstance(kind, str) else f"one of {kind}"
