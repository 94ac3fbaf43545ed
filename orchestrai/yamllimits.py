"""Bounds on what a YAML text may expand to, checked before anything is built from it.

Aliases copy what their anchor holds, so a few lines of nested aliases ("billion laughs": 9
aliases of 9 aliases of ... ) stand for billions of values; building them took minutes and
gigabytes. Nesting has to be bounded too: converting a value recurses once per level. Both are
measured here from the parser's events, where an alias costs one addition, not a copy.
"""

from __future__ import annotations

from typing import Any

import yaml

from .errors import Problem

MAX_DEPTH = 100  # nesting levels, aliases expanded (a config or pipeline needs fewer than 10)
MAX_ALIAS_VALUES = 500_000  # values aliases may add (a 10,000-step pipeline aliasing 10 values a step: 100,000)

_ALIAS_HINT = "write the values out, or use fewer (and less deeply nested) aliases"
_DEPTH_HINT = "flatten the nesting (a step's options need a few levels, not a hundred)"


def check_limits(text: str, shown: str, loader_class: Any) -> Problem | None:
    """The first bound `text` crosses, at the line of the alias (or collection) that crossed it; None if none.

    A YAML error is left to the reader that follows, which reports it with its line.
    """
    sizes: dict[str, tuple[int, int]] = {}  # anchor -> (values, levels of collections) of what it holds
    stack: list[list[Any]] = []  # open collections: [anchor, values before it, its level, deepest level inside]
    values = added = 0
    loader = loader_class(text)
    try:
        while not isinstance(event := loader.get_event(), yaml.StreamEndEvent):
            if isinstance(event, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
                anchor, before, level, deepest = stack.pop()
                if anchor is not None:
                    sizes[anchor] = (values - before, deepest - level + 1)
                if stack:
                    stack[-1][3] = max(stack[-1][3], deepest)
                continue
            if isinstance(event, yaml.ScalarEvent):
                values += 1
                if event.anchor is not None:
                    sizes[event.anchor] = (1, 0)
                continue
            if isinstance(event, yaml.AliasEvent):
                count, levels = sizes.get(event.anchor or "", (1, 0))  # an unknown anchor: the reader reports it
                values, added, level = values + count, added + count, len(stack) + levels
                if added > MAX_ALIAS_VALUES:
                    line = event.start_mark.line + 1 if event.start_mark else None
                    return Problem(shown, line, f"alias *{event.anchor} makes the aliases "
                                   f"expand to more than {MAX_ALIAS_VALUES:,} values (an alias bomb?)", _ALIAS_HINT)
                if stack:
                    stack[-1][3] = max(stack[-1][3], level)
            elif isinstance(event, yaml.CollectionStartEvent):
                values, level = values + 1, len(stack) + 1
                stack.append([event.anchor, values - 1, level, level])  # its parent learns its depth when it ends
            else:
                continue  # stream and document starts and ends
            if level > MAX_DEPTH:
                return Problem(shown, event.start_mark.line + 1, f"values nest more than {MAX_DEPTH} levels deep",
                               _DEPTH_HINT)
    except yaml.YAMLError:
        return None
    finally:
        loader.dispose()
    return None
