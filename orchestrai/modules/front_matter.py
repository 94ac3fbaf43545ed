"""YAML front matter of a prompt file: what the module does, the inputs it reads, the output it gives.

```
---
description: Translates the request into the language named by the supplement.
inputs: [request]
output_schema: {type: object, ...}      # optional: the answer is JSON matching it
---
You are a professional translator. ...
```

The block is not part of the prompt. For jinja2 it is replaced by a comment spanning the same lines
(`{#` + its newlines + `#}`), so the prompt sent has no trace of it and every template line number
(syntax errors, runtime errors, validate's problems) stays the line of the file.

A prompt that merely starts with `---` (a Markdown rule) is left alone: a block is front matter only
when it is a YAML mapping with at least one of the keys below, or when its first line starts with
one of them (then its YAML errors are reported, not sent to the model).
"""

from __future__ import annotations

import difflib
import re
import textwrap
from dataclasses import dataclass
from typing import Any

import yaml

from ..errors import Problem
from ..yamlsrc import parse_yaml

FRONT_MATTER_KEYS = ("description", "inputs", "output_schema")
_FENCE = re.compile(r"---[ \t]*\r?\n")
_CLOSE = re.compile(r"^---[ \t]*$", re.MULTILINE)
_KEY_START = re.compile(r"\s*(?:" + "|".join(FRONT_MATTER_KEYS) + r")\s*:")


@dataclass(frozen=True)
class FrontMatter:
    """What a prompt file says about itself; `lines` is how many lines the block takes (0: none)."""

    description: str | None = None
    inputs: tuple[str, ...] | None = None
    output_schema: dict[str, Any] | None = None
    lines: int = 0
    problems: tuple[Problem, ...] = ()


def split_front_matter(text: str, path: str) -> tuple[FrontMatter, str]:
    """The front matter and the template text: the block replaced by a jinja2 comment of as many lines."""
    block = _find_block(text)
    if block is None:
        return FrontMatter(), text
    inner, end = block
    newlines = text.count("\n", 0, end)
    matter = _read(inner, path, newlines)
    if matter is None:
        return FrontMatter(), text
    return matter, "{#" + "\n" * newlines + "#}" + text[end:]


def prompt_body(text: str) -> str:
    """The prompt text without its front matter (what a person reads as the prompt)."""
    block = _find_block(text)
    if block is None or _read(block[0], "", 0) is None:
        return text
    return text[block[1]:]


def render_front_matter(description: str, inputs: list[str] | None = None,
                        output_schema: dict[str, Any] | None = None) -> str:
    """The front matter block for a new prompt file (what `orchestrai plan --create-modules` writes)."""
    # A folded scalar reads as the prose it is, and takes any text once whitespace is collapsed.
    folded = textwrap.wrap(" ".join(description.split()), width=96, break_long_words=False, break_on_hyphens=False)
    lines = ["---", "description: >-", *("  " + line for line in folded)]
    if inputs is not None:
        lines.append("inputs: " + yaml.safe_dump(list(inputs), default_flow_style=True, width=1000).strip())
    if output_schema is not None:
        lines.append(yaml.safe_dump({"output_schema": output_schema}, sort_keys=False, allow_unicode=True,
                                    width=100).rstrip("\n"))
    return "\n".join([*lines, "---"]) + "\n"


def _find_block(text: str) -> tuple[str, int] | None:
    """(the YAML between the fences, the offset just after the closing fence's line), or None."""
    opening = _FENCE.match(text)
    if opening is None:
        return None
    closing = _CLOSE.search(text, opening.end())
    if closing is None:
        return None
    end = closing.end()
    if text.startswith("\r\n", end):
        end += 2
    elif text.startswith("\n", end):
        end += 1
    return text[opening.end():closing.start()], end


def _read(inner: str, path: str, newlines: int) -> FrontMatter | None:
    """The block as FrontMatter, None when it is not front matter at all (see the module docstring)."""
    doc, problems = parse_yaml(inner, path)
    data = doc.data if doc is not None and not problems else None
    looks_like_it = _KEY_START.match(inner) is not None
    if not isinstance(data, dict) or not set(data) & set(FRONT_MATTER_KEYS):
        if not looks_like_it:
            return None
        shifted = [Problem(path, p.line + 1 if p.line else None, f"prompt front matter: {p.message}", p.hint)
                   for p in problems] or [Problem(path, 2, "prompt front matter must be a YAML mapping of "
                                                  + ", ".join(FRONT_MATTER_KEYS))]
        return FrontMatter(lines=newlines, problems=tuple(shifted))
    assert doc is not None

    def at(key: str) -> int | None:
        line = doc.line_of((key,))
        return line + 1 if line else None  # the opening `---` is line 1 of the file

    found: list[Problem] = []
    for key in data:
        if key not in FRONT_MATTER_KEYS:
            close = difflib.get_close_matches(str(key), FRONT_MATTER_KEYS, n=1)
            found.append(Problem(path, at(key), f"prompt front matter: unknown key {key!r}",
                                 f"did you mean {close[0]!r}?" if close else f"use {', '.join(FRONT_MATTER_KEYS)}"))
    description, inputs, schema = data.get("description"), data.get("inputs"), data.get("output_schema")
    if description is not None and not isinstance(description, str):
        found.append(Problem(path, at("description"), "prompt front matter: description must be text"))
        description = None
    if inputs is not None and not (isinstance(inputs, list) and all(isinstance(i, str) for i in inputs)):
        found.append(Problem(path, at("inputs"), "prompt front matter: inputs must be a list of input names",
                             "e.g. inputs: [request, task_plan]"))
        inputs = None
    if schema is not None and not isinstance(schema, dict):
        found.append(Problem(path, at("output_schema"), "prompt front matter: output_schema must be a JSON Schema "
                             "mapping", "e.g. output_schema: {type: object, properties: {...}}"))
        schema = None
    return FrontMatter(description.strip() if description else None, tuple(inputs) if inputs is not None else None,
                       schema, newlines, tuple(found))
