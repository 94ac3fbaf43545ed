"""JSON Schema for structured outputs: checking a schema, parsing and validating an answer against it.

A leaf module (jsonschema only, imported on first use): the loader checks schemas with it, the engine
validates answers with it, and the echo provider builds instances from schemas beside it
(`schema_instance.py`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from jsonschema.protocols import Validator

DEFAULT_OUTPUT_RETRIES = 2
_FENCE = re.compile(r"^\s*```[A-Za-z0-9_-]*[ \t]*\n(.*?)\n?```\s*$", re.DOTALL)
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True)
class SchemaIssue:
    """One thing wrong with a schema or a value: where (a path of keys and indexes) and what."""

    path: tuple[str | int, ...]
    message: str

    @property
    def json_path(self) -> str:
        return json_path(self.path)


def json_path(path: Iterable[str | int]) -> str:
    """`$.topics[0].title` for the path ("topics", 0, "title"); keys that are not identifiers are quoted."""
    text = "$"
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
        elif _IDENTIFIER.match(part):
            text += f".{part}"
        else:
            text += f"[{json.dumps(part)}]"
    return text


def _validator_class(schema: Mapping[str, Any]) -> type[Validator]:
    """The validator for the schema's `$schema` (draft 2020-12 when it names none)."""
    from jsonschema import Draft202012Validator, validators

    return validators.validator_for(schema, default=Draft202012Validator)


def schema_issues(schema: Any) -> list[SchemaIssue]:
    """What is wrong with `schema` as a JSON Schema (an empty list when it is fine)."""
    from jsonschema.exceptions import SchemaError

    if not isinstance(schema, Mapping):
        return [SchemaIssue((), f"output_schema must be a mapping (a JSON Schema), not {_type_name(schema)}")]
    cls = _validator_class(schema)
    try:
        cls.check_schema(dict(schema))
    except SchemaError as exc:
        return [SchemaIssue(tuple(exc.absolute_path), exc.message)]
    return []


# Compiled validators by schema identity: a step's schema is one dict for the whole run. The schema
# is kept in the value so that its id cannot be reused by another object while cached.
_VALIDATORS: dict[int, tuple[Mapping[str, Any], Validator]] = {}


def _validator(schema: Mapping[str, Any]) -> Validator:
    cached = _VALIDATORS.get(id(schema))
    if cached is None or cached[0] is not schema:
        from jsonschema import FormatChecker

        cls = _validator_class(schema)
        cached = _VALIDATORS[id(schema)] = (schema, cls(schema, format_checker=FormatChecker()))
    return cached[1]


def validate(value: Any, schema: Mapping[str, Any]) -> SchemaIssue | None:
    """The most relevant way `value` does not match `schema`, or None when it does."""
    from jsonschema.exceptions import best_match
    from referencing.exceptions import Unresolvable

    try:
        error = best_match(_validator(schema).iter_errors(value))
    except Unresolvable as exc:  # a $ref to something the schema does not hold: no file or URL is fetched
        return SchemaIssue((), f"the schema's $ref cannot be resolved: {exc}")
    if error is None:
        return None
    return SchemaIssue(tuple(error.absolute_path), error.message)


def parse_answer(text: str) -> tuple[Any, str | None]:
    """A model's answer as JSON: the value and None, or None and why it is not JSON.

    A ```json fenced block is accepted (models add one even when asked not to).
    """
    fenced = _FENCE.match(text)
    body = fenced.group(1) if fenced else text
    try:
        return json.loads(body), None
    except ValueError as exc:
        return None, f"the answer is not valid JSON: {exc}"


def _type_name(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean", int: "a number",
            float: "a number"}.get(type(value), type(value).__name__)
