"""Load YAML keeping the line of every value, so errors can say `file:line`."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .errors import Problem
from .yamllimits import MAX_DEPTH, check_limits

try:  # the C loader is several times faster on big pipelines
    _Loader: type = yaml.CSafeLoader
except AttributeError:  # pragma: no cover - PyYAML built without libyaml
    _Loader = yaml.SafeLoader

Loc = tuple[Any, ...]
_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


@dataclass
class YamlDoc:
    """Parsed YAML data plus the 1-based line of every mapping key and list item."""

    path: str
    data: Any
    lines: dict[Loc, int] = field(default_factory=dict)
    unset_env: dict[Loc, str] = field(default_factory=dict)  # loc -> name of an unset ${VAR}
    # loc -> the values its ${VAR}s expanded to: what config.yml reads from the environment may be a secret.
    env_values: dict[Loc, list[str]] = field(default_factory=dict)

    def line_of(self, loc: Loc) -> int | None:
        """The line of `loc`, or of its nearest located ancestor."""
        loc = tuple(loc)
        while loc:
            if loc in self.lines:
                return self.lines[loc]
            loc = loc[:-1]
        return self.lines.get((), None)

    def problem(self, loc: Loc, message: str, hint: str | None = None) -> Problem:
        return Problem(self.path, self.line_of(loc), message, hint)


def load_yaml(path: Path, *, expand_env: bool = False) -> tuple[YamlDoc | None, list[Problem]]:
    """Read and parse `path`; a syntax error becomes a Problem with its line instead of an exception."""
    shown = _display_path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None, [Problem(shown, None, "file not found")]
    except (OSError, UnicodeDecodeError) as exc:
        return None, [Problem(shown, None, f"cannot read file: {exc}")]
    return parse_yaml(text, shown, expand_env=expand_env)


def parse_yaml(text: str, shown: str, *, expand_env: bool = False) -> tuple[YamlDoc | None, list[Problem]]:
    """Parse YAML text that came from `shown` (a path for messages)."""
    doc = YamlDoc(shown, None)
    problems: list[Problem] = []
    try:
        doc.data = _EventReader(doc, problems, expand_env).read(text)
    except (_Unusual, yaml.YAMLError):
        # Anchors, tags, complex keys, several documents or a syntax error: the node tree below
        # handles (or reports) them all; reading once more costs nothing next to a person's fix.
        return _parse_nodes(text, shown, expand_env=expand_env)
    return doc, problems


class _Unusual(Exception):
    """YAML the event reader leaves to the node tree."""


class _EventReader:
    """Builds the data and the line of every key and item straight from the parser's events.

    The same result as composing a node tree and converting it (`_parse_nodes`) for plain YAML
    without anchors or tags, 3-4x faster: yaml.compose spent most of a 10,000-step pipeline's
    validation building node objects and resolving every scalar's tag in Python. Here each
    distinct plain scalar is resolved once.
    """

    def __init__(self, doc: YamlDoc, problems: list[Problem], expand_env: bool) -> None:
        self.doc, self.problems, self.expand_env = doc, problems, expand_env
        self._plain: dict[str, Any] = {}  # plain scalar text -> its value (ints, bools, null, ...)

    def read(self, text: str) -> Any:
        root: Any = None
        documents = 0
        lines = self.doc.lines
        # Open collections: [container, its loc, the loc of the value due next (mappings: None while a key is due)]
        stack: list[list[Any]] = []
        loader = _Loader(text)
        try:
            # get_event() directly, not yaml.parse(): its generator checked for an event before each one.
            while (kind := type(event := loader.get_event())) is not yaml.StreamEndEvent:
                if kind is yaml.MappingEndEvent or kind is yaml.SequenceEndEvent:
                    stack.pop()
                    continue
                if kind is yaml.DocumentStartEvent:
                    documents += 1
                    if documents > 1:
                        raise _Unusual  # yaml.compose reports "expected a single document"
                    continue
                if kind is not yaml.ScalarEvent and kind is not yaml.MappingStartEvent \
                        and kind is not yaml.SequenceStartEvent:
                    continue  # stream start, document end
                if event.anchor is not None or event.tag is not None:
                    raise _Unusual
                line = event.start_mark.line + 1
                if not stack:
                    loc: Loc = ()
                    lines[loc] = line
                else:
                    top = stack[-1]
                    container = top[0]
                    if type(container) is dict:
                        loc = top[2]
                        if loc is None:  # this event is a key
                            if kind is not yaml.ScalarEvent:
                                raise _Unusual  # a mapping or list as a key
                            key = self._scalar(event)
                            if key in container:
                                self.problems.append(Problem(self.doc.path, line, f"duplicate key {key!r}",
                                                            "remove one of them"))
                            top[2] = lines_key = (*top[1], key)
                            lines[lines_key] = line
                            continue
                        top[2] = None
                    else:
                        loc = (*top[1], len(container))
                        lines[loc] = line
                if kind is yaml.ScalarEvent:
                    value = self._scalar(event)
                    if self.expand_env and isinstance(value, str) and "${" in value:
                        value = _expand(value, loc, self.doc)
                else:
                    value = {} if kind is yaml.MappingStartEvent else []
                if not stack:
                    root = value
                elif type(stack[-1][0]) is dict:
                    stack[-1][0][loc[-1]] = value
                else:
                    stack[-1][0].append(value)
                if kind is not yaml.ScalarEvent:
                    if len(stack) >= MAX_DEPTH:
                        raise _Unusual  # the node tree's path reports it (and bounds aliases likewise)
                    stack.append([value, loc, None])
        finally:
            loader.dispose()
        return root

    def _scalar(self, event: yaml.ScalarEvent) -> Any:
        if not event.implicit[0]:  # quoted or a block literal: always a string
            return event.value
        if event.value not in self._plain:
            # PyYAML's stubs leave Resolver.resolve unannotated; it returns the tag, a str.
            tag: str = _resolver.resolve(yaml.ScalarNode, event.value, event.implicit)  # type: ignore[no-untyped-call]
            if tag == _MERGE_TAG:
                raise _Unusual  # `<<`: merge keys are resolved on the node tree
            self._plain[event.value] = _scalar(yaml.ScalarNode(tag, event.value))
        return self._plain[event.value]


_KEY = object()
_MERGE_TAG = "tag:yaml.org,2002:merge"
_resolver = yaml.resolver.Resolver()  # the resolver yaml.CSafeLoader / SafeLoader use


def _parse_nodes(text: str, shown: str, *, expand_env: bool = False) -> tuple[YamlDoc | None, list[Problem]]:
    """`parse_yaml` through yaml.compose and the node tree: every YAML feature, every error.

    Aliases are bounded first: yaml.compose shares an anchor's node, but converting copies it
    at every alias.
    """
    too_big = check_limits(text, shown, _Loader)
    if too_big is not None:
        return None, [too_big]
    try:
        node = yaml.compose(text, Loader=_Loader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        line = mark.line + 1 if mark else None
        reason = getattr(exc, "problem", None) or str(exc)
        return None, [Problem(shown, line, f"YAML syntax error: {reason}",
                              "check indentation, colons and quotes on this line")]
    doc = YamlDoc(shown, None)
    problems: list[Problem] = []
    if node is not None:
        doc.lines[()] = node.start_mark.line + 1
        doc.data = _convert(node, (), doc, problems, expand_env)
    return doc, problems


def _convert(node: yaml.Node, loc: Loc, doc: YamlDoc, problems: list[Problem], expand_env: bool) -> Any:
    if isinstance(node, yaml.MappingNode):
        out: dict[Any, Any] = {}
        for key_node, value_node in _pairs(node, doc, problems):
            key = _scalar(key_node)
            if key in out:
                problems.append(Problem(doc.path, key_node.start_mark.line + 1, f"duplicate key {key!r}",
                                        "remove one of them"))
            doc.lines[loc + (key,)] = key_node.start_mark.line + 1
            out[key] = _convert(value_node, (*loc, key), doc, problems, expand_env)
        return out
    if isinstance(node, yaml.SequenceNode):
        items = []
        for index, item in enumerate(node.value):
            doc.lines[loc + (index,)] = item.start_mark.line + 1
            items.append(_convert(item, (*loc, index), doc, problems, expand_env))
        return items
    value = _scalar(node)
    if expand_env and isinstance(value, str) and "${" in value:
        value = _expand(value, loc, doc)
    return value


def _pairs(node: yaml.MappingNode, doc: YamlDoc, problems: list[Problem]) -> list[tuple[yaml.Node, yaml.Node]]:
    """A mapping's key and value nodes, merge keys resolved as safe_load does (`<<: *base`, `<<: [*a, *b]`).

    Keys written in the mapping win over merged ones, and an earlier merged mapping over a later.
    Merged keys keep the lines where they are written (the anchor's), which is where to fix them.
    """
    if not any(key.tag == _MERGE_TAG for key, _ in node.value):
        return list(node.value)
    explicit = [(key, value) for key, value in node.value if key.tag != _MERGE_TAG]
    taken = {_scalar(key) for key, _ in explicit}
    inherited = []
    for key, value in node.value:
        if key.tag != _MERGE_TAG:
            continue
        for source in value.value if isinstance(value, yaml.SequenceNode) else [value]:
            if not isinstance(source, yaml.MappingNode):
                problems.append(Problem(doc.path, key.start_mark.line + 1, "`<<` (merge) needs a mapping or a "
                                        "list of mappings", "write `<<: *name` where `&name` marks a mapping"))
                continue
            for merged_key, merged_value in _pairs(source, doc, problems):
                name = _scalar(merged_key)
                if name not in taken:
                    taken.add(name)
                    inherited.append((merged_key, merged_value))
    return inherited + explicit


_constructor = yaml.constructor.SafeConstructor()


def _scalar(node: yaml.Node) -> Any:
    # Resolve tags exactly as safe_load would (ints, floats, bools, null) for one scalar.
    if node.tag == "tag:yaml.org,2002:str":
        return node.value
    try:
        return _constructor.construct_object(node, deep=True)
    except yaml.constructor.ConstructorError:
        return node.value


def _expand(value: str, loc: Loc, doc: YamlDoc) -> str | None:
    """Expand ${VAR} and ${VAR:-default}; an unset whole-value reference becomes None and is remembered."""
    whole = _ENV_REF.fullmatch(value)
    if whole and whole.group(1) not in os.environ and whole.group(2) is None:
        doc.unset_env[loc] = whole.group(1)
        return None

    def substitute(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        if name in os.environ:
            doc.env_values.setdefault(loc, []).append(os.environ[name])
            return os.environ[name]
        if default is None:
            doc.unset_env[loc] = name
        return default or ""

    return _ENV_REF.sub(substitute, value)


def _display_path(path: Path) -> str:
    """A path as the user would type it: relative to the current directory when inside it."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)
