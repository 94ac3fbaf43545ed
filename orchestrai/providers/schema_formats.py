"""A step's output_schema in each API's own form: OpenAI's `response_format`, Anthropic's forced tool."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

TOOL_NAME = "structured_output"
TOOL_DESCRIPTION = "Give your answer by calling this tool: its input is the answer, matching the schema."
# What OpenAI's strict mode accepts, kept short on purpose: a schema using anything else is sent with
# strict false (still constrained to JSON, and the engine validates), rather than refused by the API.
STRICT_KEYWORDS = frozenset({"type", "properties", "required", "additionalProperties", "items", "enum", "const",
                             "anyOf", "$ref", "$defs", "definitions", "description", "title"})
_SCHEMA_CHILDREN = ("items", "additionalProperties")
_NAME = re.compile(r"[^A-Za-z0-9_-]+")


def openai_response_format(schema: Mapping[str, Any]) -> dict[str, Any]:
    """`response_format` for a JSON Schema answer; strict only when `strict_allowed` says it may be."""
    sent = {k: v for k, v in schema.items() if k != "$schema"}  # metadata, not part of the shape
    name = _NAME.sub("_", str(schema.get("title") or "output"))[:64].strip("_") or "output"
    return {"type": "json_schema", "json_schema": {"name": name, "schema": sent, "strict": strict_allowed(sent)}}


def strict_allowed(schema: Mapping[str, Any]) -> bool:
    """Whether OpenAI's strict mode takes this schema as it is.

    Conservative: the root is an object; every object closes `additionalProperties: false` and lists
    all its properties in `required`; only STRICT_KEYWORDS are used.
    """
    return schema.get("type") == "object" and _strict_node(schema, 0)


def _strict_node(node: Any, depth: int) -> bool:
    if isinstance(node, bool) or depth > 32:
        return False
    if not isinstance(node, Mapping) or not set(node) <= STRICT_KEYWORDS:
        return False
    kinds = node.get("type")
    if kinds == "object" or (isinstance(kinds, list) and "object" in kinds) or "properties" in node:
        properties = node.get("properties") or {}
        if node.get("additionalProperties") is not False or set(node.get("required") or []) != set(properties):
            return False
        if not all(_strict_node(child, depth + 1) for child in properties.values()):
            return False
    for key in _SCHEMA_CHILDREN:
        child = node.get(key)
        if isinstance(child, Mapping) and not _strict_node(child, depth + 1):
            return False
    for key in ("$defs", "definitions"):
        if not all(_strict_node(child, depth + 1) for child in (node.get(key) or {}).values()):
            return False
    return all(_strict_node(child, depth + 1) for child in node.get("anyOf") or [])


def anthropic_tool(schema: Mapping[str, Any]) -> tuple[dict[str, Any], bool]:
    """The forced tool whose input is the answer, and whether the answer is wrapped under `value`.

    A tool's `input_schema` must describe an object: any other schema (a list, a string) is wrapped.
    """
    wrapped = schema.get("type") != "object"
    sent = {k: v for k, v in schema.items() if k != "$schema"}
    if wrapped:
        # Definitions stay at the root, where the schema's $ref paths point.
        defs: dict[str, Any] = {k: sent.pop(k) for k in ("$defs", "definitions") if k in sent}
        sent = {"type": "object", "properties": {WRAPPED_KEY: sent}, "required": [WRAPPED_KEY], **defs}
    return {"name": TOOL_NAME, "description": TOOL_DESCRIPTION, "input_schema": sent}, wrapped


WRAPPED_KEY = "value"
