"""A deterministic instance of a JSON Schema: what the echo provider answers a structured call with.

Covers what output schemas use: objects (required properties, and minProperties), arrays (minItems,
prefixItems), strings (enum, const, minLength, maxLength, a few formats), integers and numbers
(minimum, maximum, exclusive bounds, multipleOf), booleans, null, allOf (merged), anyOf/oneOf (the
first branch), and `$ref` to `#/...` inside the same schema. It does not solve `pattern` or `not`:
the engine validates the instance like any answer, so such a schema fails with a clear message.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

MAX_DEPTH = 32  # a recursive $ref stops here (required recursion is then unsatisfiable anyway)
_FORMATS = {"date": "2024-01-01", "date-time": "2024-01-01T00:00:00Z", "time": "00:00:00Z",
            "email": "user@example.com", "uri": "https://example.com", "uuid": "00000000-0000-0000-0000-000000000000",
            "ipv4": "127.0.0.1", "hostname": "example.com"}


def example_instance(schema: Any, root: Mapping[str, Any] | None = None, depth: int = 0) -> Any:
    """A value that matches `schema` (for the keywords listed in the module docstring)."""
    if schema is True or not isinstance(schema, Mapping):
        return None if schema is not True else {}
    root = schema if root is None else root
    if depth > MAX_DEPTH:
        return None
    if "$ref" in schema:
        target = _resolve(str(schema["$ref"]), root)
        if target is not None:
            return example_instance(target, root, depth + 1)
    if "const" in schema:
        return schema["const"]
    if schema.get("enum"):
        return schema["enum"][0]
    if "allOf" in schema:
        merged: dict[str, Any] = {k: v for k, v in schema.items() if k != "allOf"}
        for part in schema["allOf"]:
            if isinstance(part, Mapping):
                merged = _merge(merged, _deref(part, root))
        return example_instance(merged, root, depth + 1)
    for key in ("anyOf", "oneOf"):
        if schema.get(key):
            return example_instance({**{k: v for k, v in schema.items() if k != key}, **schema[key][0]}, root,
                                    depth + 1)
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), kind[0] if kind else None)
    if kind is None:
        kind = _guess_type(schema)
    maker = _MAKERS.get(str(kind))
    return maker(schema, root, depth) if maker else None


def _object(schema: Mapping[str, Any], root: Mapping[str, Any], depth: int) -> dict[str, Any]:
    properties = schema.get("properties") or {}
    wanted = list(schema.get("required") or [])
    # minProperties: add declared properties beyond the required ones, in order.
    for name in properties:
        if len(wanted) >= int(schema.get("minProperties", 0)):
            break
        if name not in wanted:
            wanted.append(name)
    return {name: example_instance(properties.get(name, {}), root, depth + 1) for name in wanted}


def _array(schema: Mapping[str, Any], root: Mapping[str, Any], depth: int) -> list[Any]:
    prefix = list(schema.get("prefixItems") or [])
    # One item at least, when allowed: a dry run's templates and later steps then have an item to read.
    count = max(int(schema.get("minItems", 0)), 1 if schema.get("maxItems", 1) else 0)
    if schema.get("items") is False:
        count = min(count, len(prefix))
    items = schema.get("items", {})
    values = [example_instance(prefix[i] if i < len(prefix) else items, root, depth + 1) for i in range(count)]
    if schema.get("uniqueItems") and len({repr(v) for v in values}) < len(values):
        values = [_distinct(v, i) for i, v in enumerate(values)]
    return values


def _string(schema: Mapping[str, Any], root: Mapping[str, Any], depth: int) -> str:
    text = _FORMATS.get(str(schema.get("format", "")), "example")
    low, high = int(schema.get("minLength", 0)), schema.get("maxLength")
    if len(text) < low:
        text += "x" * (low - len(text))
    return text if high is None else text[:int(high)]


def _number(schema: Mapping[str, Any], root: Mapping[str, Any], depth: int) -> float:
    low = _bound(schema, "minimum", "exclusiveMinimum", 1)
    high = _bound(schema, "maximum", "exclusiveMaximum", -1)
    value = 0.0 if low is None else low
    if high is not None and value > high:
        value = high
    step = schema.get("multipleOf")
    if step:
        value = math.ceil(value / float(step)) * float(step)
    return value


def _integer(schema: Mapping[str, Any], root: Mapping[str, Any], depth: int) -> int:
    low = _bound(schema, "minimum", "exclusiveMinimum", 1)
    high = _bound(schema, "maximum", "exclusiveMaximum", -1)
    value = 0 if low is None else math.ceil(low)
    if high is not None and value > high:
        value = math.floor(high)
    step = schema.get("multipleOf")
    if step:
        value = math.ceil(value / float(step)) * int(step)
    return int(value)


def _bound(schema: Mapping[str, Any], inclusive: str, exclusive: str, direction: int) -> float | None:
    """The nearest allowed bound on one side: an exclusive bound is moved one unit inside."""
    if isinstance(schema.get(exclusive), (int, float)) and not isinstance(schema.get(exclusive), bool):
        return float(schema[exclusive]) + direction
    value = schema.get(inclusive)
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


_MAKERS: dict[str, Any] = {
    "object": _object, "array": _array, "string": _string, "number": _number, "integer": _integer,
    "boolean": lambda schema, root, depth: False, "null": lambda schema, root, depth: None,
}


def _guess_type(schema: Mapping[str, Any]) -> str | None:
    if "properties" in schema or "required" in schema:
        return "object"
    if "items" in schema or "prefixItems" in schema:
        return "array"
    if "minLength" in schema or "maxLength" in schema or "format" in schema:
        return "string"
    if "minimum" in schema or "maximum" in schema:
        return "number"
    return None


def _resolve(ref: str, root: Mapping[str, Any]) -> Any:
    """The part of `root` a local `#/a/b` reference points at (None for anything else)."""
    if not ref.startswith("#"):
        return None
    node: Any = root
    for part in [p for p in ref[1:].split("/") if p]:
        part = part.replace("~1", "/").replace("~0", "~")
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node


def _deref(schema: Mapping[str, Any], root: Mapping[str, Any]) -> Mapping[str, Any]:
    target = _resolve(str(schema["$ref"]), root) if "$ref" in schema else None
    return target if isinstance(target, Mapping) else schema


def _merge(a: dict[str, Any], b: Mapping[str, Any]) -> dict[str, Any]:
    merged = {**a, **b}
    if "properties" in a and "properties" in b:
        merged["properties"] = {**a["properties"], **b["properties"]}
    if "required" in a and "required" in b:
        merged["required"] = list(dict.fromkeys([*a["required"], *b["required"]]))
    return merged


def _distinct(value: Any, index: int) -> Any:
    if isinstance(value, str):
        return f"{value}{index}"
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return value + index
    return value
