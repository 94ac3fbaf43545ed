"""Files out of a model's Markdown answer.

A file is a fenced code block whose path is given explicitly, in one of the shapes models use:

- in the fence's info string: ```` ```python main.py ````, ```` ```main.py ````, ```` ```python title="main.py" ````,
  ```` ```python:main.py ````;
- on its own line just before the block (blank lines allowed between): ``main.py``, ``**main.py**``,
  ```` `main.py` ````, ``### main.py``, ``File: main.py``, ``**File:** `main.py` ``, optionally ending with ``:``
  or followed by a short description in parentheses or after a dash;
- as a first-line marker inside the block: ``# File: main.py``, ``// file: src/app.js``.

Anything else is reported, never guessed: a block with no path (prose such as "Here is `main.py`:" is
not a label, since an excerpt introduced that way would overwrite the whole file), a block that seems to
hold another block with the same fence (its end is ambiguous), and a block never closed (the answer was
cut short). Paths are returned as written; the writer decides what is safe.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})(?P<info>.*)$")
KNOWN_NAMES = frozenset({"Makefile", "Dockerfile", "LICENSE", "Procfile", "Justfile", "Gemfile", "Rakefile",
                         ".gitignore", ".dockerignore", ".editorconfig", ".env", ".env.example"})
EXTENSION = re.compile(r"\.[A-Za-z0-9_+-]{1,12}$")
LABEL_PREFIX = re.compile(r"(?i)^(?:\*\*|__)?(?:file\s*name|filename|file|path)\s*:\s*(?:\*\*|__)?\s*")
INFO_KEY = re.compile(r"""(?i)^(?:title|file|filename|path)=["']?([^"']+)["']?$""")
MARKER = re.compile(r"""(?i)^\s*(?:#|//|--|;|<!--|/\*)\s*"""  # a comment opener, then the label and the path
                    r"""(?:file\s*name|filename|file|path)\s*:\s*(\S+?)\s*(?:-->|\*/)?\s*$""")
DESCRIPTION = re.compile(r"^(?:\(.*\)|[-–—:].*)$")


@dataclass(frozen=True)
class AnswerFile:
    """One file found in an answer: its path as written, its full content, and where it was."""

    path: str
    content: str
    line: int  # 1-based line of the opening fence
    found_by: str  # "info" | "label" | "marker"


@dataclass(frozen=True)
class Refusal:
    """A file that was not written, and why (shared by the parser and the writer)."""

    path: str
    reason: str

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"


@dataclass
class ParsedAnswer:
    """The files of an answer, the labelled blocks that could not be used, and notes on ignored blocks."""

    files: list[AnswerFile] = field(default_factory=list)
    refused: list[Refusal] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


@dataclass
class _Block:
    """A fenced block while it is being read."""

    line: int
    indent: int
    fence: str
    info: str
    label: str | None  # the nearest non-blank line before the block, if any
    lines: list[str] = field(default_factory=list)
    nested_at: int | None = None
    depth: int = 0  # inner blocks opened with the same fence and not yet closed


def parse_answer(text: str) -> ParsedAnswer:
    """Every explicitly labelled file in `text`; later copies of a path replace earlier ones (noted)."""
    result = ParsedAnswer()
    block: _Block | None = None
    label: str | None = None
    for number, line in enumerate(text.replace("\r\n", "\n").replace("\r", "\n").split("\n"), start=1):
        if block is None:
            opening = _opening_fence(line)
            if opening is None:
                label = line if line.strip() else label
                continue
            indent, fence, info = opening
            block, label = _Block(number, indent, fence, info, label), None
        elif not line.lstrip().startswith(block.fence[0]):  # the common case, kept cheap for huge answers
            block.lines.append(_dedent(line, block.indent))
        elif _is_closing_fence(line, block) and not block.depth:
            _finish(block, result)
            block = None
        else:
            if _is_closing_fence(line, block):
                block.depth -= 1  # closes an inner block, not this one
            _track_nesting(line, block, number)
            block.lines.append(_dedent(line, block.indent))
    if block is not None:
        where = _describe(block)
        path = _path_of(block)[0]
        if path:
            result.refused.append(Refusal(path, f"its code block (line {block.line}) is never closed: "
                                                "the answer was probably cut short"))
        else:
            result.notes.append(f"{where} is never closed; ignored")
    _drop_duplicates(result)
    return result


def _opening_fence(line: str) -> tuple[int, str, str] | None:
    match = FENCE.match(line)
    if match is None or (match["fence"][0] == "`" and "`" in match["info"]):
        return None
    return len(match["indent"].expandtabs(4)), match["fence"], match["info"].strip()


def _is_closing_fence(line: str, block: _Block) -> bool:
    """Same fence character, at least as long as the opening one, nothing else on the line."""
    stripped = line.strip()
    return stripped.startswith(block.fence) and set(stripped) == {block.fence[0]}


def _track_nesting(line: str, block: _Block, number: int) -> None:
    # An inner "```bash" with the same fence as ours: by Markdown's rules the next bare "```" ends *our*
    # block, which is rarely what the model meant. We note it and follow the nesting only to find the
    # real end, so the blocks after it still parse; the file itself is refused.
    opening = _opening_fence(line)
    if opening is not None and opening[2] and opening[1][0] == block.fence[0] and len(opening[1]) >= len(block.fence):
        block.depth += 1
        block.nested_at = block.nested_at or number


def _dedent(line: str, indent: int) -> str:
    """Remove up to the opening fence's indentation (blocks inside list items are indented)."""
    if not indent:
        return line
    expanded = line.expandtabs(4)
    removable = len(expanded) - len(expanded.lstrip(" "))
    return expanded[min(indent, removable):]


def _finish(block: _Block, result: ParsedAnswer) -> None:
    path, found_by = _path_of(block)
    content = "\n".join(block.lines)
    content = content + "\n" if content and not content.endswith("\n") else content
    if path is None:
        language = block.info.split()[0] if block.info else "no language"
        result.notes.append(f"{_describe(block)} ({language}, {len(block.lines)} lines) has no file name; ignored")
    elif block.nested_at is not None:
        result.refused.append(Refusal(path, f"its code block (line {block.line}) holds another block with the same "
                                            f"fence (line {block.nested_at}), so where it ends is ambiguous; "
                                            f"open the outer block with a longer fence (````)"))
    else:
        result.files.append(AnswerFile(path, content, block.line, found_by))


def _path_of(block: _Block) -> tuple[str | None, str]:
    """The block's path and how it was found: fence info first, then the label line, then a first-line marker."""
    from_info = info_path(block.info)
    if from_info:
        return from_info, "info"
    from_label = label_path(block.label) if block.label is not None else None
    if from_label:
        return from_label, "label"
    if block.lines and (marker := MARKER.match(block.lines[0])) and looks_like_path(marker[1]):
        return marker[1], "marker"
    return None, ""


def info_path(info: str) -> str | None:
    """A path in a fence's info string.

    As in ``python main.py``, ``main.py``, ``python title="main.py"``, ``python:main.py``.
    """
    tokens = info.split()
    if not tokens:
        return None
    for token in tokens:
        if (keyed := INFO_KEY.match(token)) and looks_like_path(keyed[1]):
            return keyed[1]
    first = tokens[0]
    if ":" in first and looks_like_path(after := first.split(":", 1)[1]):
        return after
    if len(tokens) >= 2 and looks_like_path(tokens[1]):
        return tokens[1]
    if len(tokens) == 1 and looks_like_path(first) and ("." in first or "/" in first):
        return first
    return None


def label_path(line: str) -> str | None:
    """The path in a label line (a path on its own line, decorated as models do), else None."""
    text = line.strip()
    text = re.sub(r"^#{1,6}\s+", "", text)
    text = re.sub(r"^(?:[-*+]|\d+[.)])\s+", "", text)
    text = _undecorate(text)
    text = _undecorate(LABEL_PREFIX.sub("", text))
    if looks_like_path(text):
        return text
    first, _, rest = text.partition(" ")
    first = _undecorate(first)
    if rest and DESCRIPTION.match(rest.strip()) and looks_like_path(first):
        return first
    return None


def _undecorate(text: str) -> str:
    """Strip emphasis, backticks and a trailing colon around a label, in any nesting (`**`main.py`:**`)."""
    previous = None
    while text != previous:
        previous = text
        text = text.strip().rstrip(":").strip()
        for mark in ("**", "__", "*", "`"):
            if len(text) > 2 * len(mark) and text.startswith(mark) and text.endswith(mark):
                text = text[len(mark):-len(mark)]
    return text.strip()


def looks_like_path(text: str) -> bool:
    """A single token that names a file: has an extension or a slash, or is a well-known file name."""
    if not text or any(c.isspace() for c in text) or "://" in text or "`" in text or "*" in text:
        return False
    name = text.replace("\\", "/").rstrip("/").rsplit("/", 1)[-1] if not text.endswith("/") else ""
    if not name or not any(c.isalpha() for c in name):
        return False
    return name in KNOWN_NAMES or bool(EXTENSION.search(name)) or "/" in text.replace("\\", "/")


def _drop_duplicates(result: ParsedAnswer) -> None:
    latest: dict[str, AnswerFile] = {}
    for item in result.files:
        if item.path in latest:
            result.notes.append(f"{item.path} is given twice (lines {latest[item.path].line} and {item.line}); "
                                "the later one is used")
        latest[item.path] = item
    result.files = [f for f in result.files if latest[f.path] is f]


def _describe(block: _Block) -> str:
    return f"the code block at line {block.line}"
