"""Turn pydantic validation errors into `file:line: message` problems a person can act on."""

from __future__ import annotations

import difflib
from typing import Any

from pydantic import ValidationError

from .errors import Problem
from .names import PATTERN_RULES
from .yamlsrc import YamlDoc


def problems_from_validation_error(exc: ValidationError, doc: YamlDoc, *, what: str, prefix: tuple[Any, ...] = (),
                                   model: Any = None) -> list[Problem]:
    """One Problem per pydantic error, located at the offending key's line."""
    problems = []
    for error in exc.errors(include_url=False):
        loc = (*prefix, *error["loc"])
        dotted = ".".join(str(part) for part in loc) or what
        kind = error["type"]
        if kind == "extra_forbidden":
            key = str(error["loc"][-1])
            hint = _suggest(key, _allowed_keys(model, error["loc"][:-1])) or "remove it, or check the spelling"
            problems.append(doc.problem(loc, f"unknown key {dotted!r}", hint))
        elif kind == "missing":
            problems.append(doc.problem(loc[:-1], f"missing required key {dotted!r}", f"add `{loc[-1]}:`"))
        elif kind == "string_pattern_mismatch" and (error.get("ctx") or {}).get("pattern") in PATTERN_RULES:
            # "should match pattern '^[A-Za-z0-9_-]+...'" says nothing to most people: say what is allowed.
            rule, hint = PATTERN_RULES[error["ctx"]["pattern"]]
            problems.append(doc.problem(loc, f"{dotted}: {error.get('input')!r} is not allowed: {rule}", hint))
        else:
            got = error.get("input")
            shown = f" (got {got!r})" if not isinstance(got, (dict, list)) else ""
            problems.append(doc.problem(loc, f"{dotted}: {error['msg'].lower()}{shown}"))
    return problems


def _allowed_keys(model: Any, loc: tuple[Any, ...]) -> list[str]:
    """The field names (and aliases) allowed at `loc` in `model`, for did-you-mean hints."""
    for part in loc:
        if model is None or not hasattr(model, "model_fields"):
            return []
        info = model.model_fields.get(part) or next((f for f in model.model_fields.values() if f.alias == part), None)
        if info is None:
            continue  # a list index or dict key: stay on the same model
        model = _inner_model(info.annotation)
    if model is None or not hasattr(model, "model_fields"):
        return []
    return [info.alias or name for name, info in model.model_fields.items()]


def _inner_model(annotation: Any) -> Any:
    """The pydantic model inside list[X], dict[str, X], X | None."""
    if hasattr(annotation, "model_fields"):
        return annotation
    for arg in getattr(annotation, "__args__", ()) or ():
        found = _inner_model(arg)
        if found is not None:
            return found
    return None


def _suggest(key: str, allowed: list[str]) -> str | None:
    close = difflib.get_close_matches(key, allowed, n=1, cutoff=0.6)
    return f"did you mean {close[0]!r}?" if close else (f"allowed keys: {', '.join(allowed)}" if allowed else None)
