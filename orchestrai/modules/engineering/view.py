"""A condensed view of a codebase that fits a token budget.

Small codebases are shown whole. When the whole does not fit, every file starts as an outline
(Python: imports, constants, signatures and docstrings; other text: its first lines), then files are
shown in full — the focus files first (the entry point, files named in a traceback), then the
smallest — while the budget allows. What still does not fit is listed by name and size. Tokens are
estimated as characters / 4, the usual rule of thumb for English and code.
"""

from __future__ import annotations

import ast
import copy
import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path

from .writer import MANAGED, read_confined

IGNORED_DIRS = frozenset({*MANAGED, "__pycache__", ".pytest_cache", ".mypy_cache", ".ruff_cache", ".git",
                          "node_modules"})
MAX_LISTED = 2000
MAX_READ_BYTES = 512 * 1024
HEAD_LINES = 15
LANGUAGES = {".py": "python", ".md": "markdown", ".txt": "text", ".toml": "toml", ".cfg": "ini", ".ini": "ini",
             ".json": "json", ".yml": "yaml", ".yaml": "yaml", ".sh": "bash", ".js": "javascript",
             ".ts": "typescript", ".html": "html", ".css": "css", ".csv": "csv", ".sql": "sql"}


def estimate_tokens(text: str) -> int:
    return len(text) // 4 + 1


def list_files(root: Path) -> list[str]:
    """The codebase's regular files, as sorted relative paths; symlinks and orchestrai's folders are skipped."""
    found: list[str] = []
    pending = [Path(root)]
    while pending and len(found) < MAX_LISTED:
        folder = pending.pop()
        try:
            entries = list(os.scandir(folder))
        except OSError:
            continue
        for entry in entries:
            if entry.is_symlink():
                continue  # never follow what a generated program may have linked in
            if entry.is_dir(follow_symlinks=False):
                if entry.name not in IGNORED_DIRS:
                    pending.append(Path(entry.path))
            elif stat.S_ISREG(entry.stat(follow_symlinks=False).st_mode):
                found.append(Path(entry.path).relative_to(root).as_posix())
    return sorted(found)[:MAX_LISTED]


@dataclass(frozen=True)
class _Section:
    path: str
    full: str
    outline: str
    size: int


def build_view(root: Path, *, budget_tokens: int, focus: tuple[str, ...] = (), files: list[str] | None = None) -> str:
    """The codebase under `root` as Markdown sections that together fit `budget_tokens`."""
    paths = list_files(root) if files is None else files
    sections, binary = _read_sections(root, paths)
    header = f"Files ({len(paths)}): " + ", ".join(paths) + "\n"
    if estimate_tokens(header) > budget_tokens // 2:
        header = f"{len(paths)} files; the first: " + ", ".join(paths[:50]) + "\n"
    budget = budget_tokens - estimate_tokens(header)
    chosen = _choose(sections, budget, focus)
    shown = [text for text in chosen.values() if text]
    left_out = [f"{s.path} ({_kib(s.size)})" for s in sections if not chosen[s.path]]
    left_out += [f"{path} (binary)" for path in binary]
    footer = ("\nNot shown: " + ", ".join(left_out) + "\n") if left_out else ""
    return header + "\n" + "\n".join(shown) + footer


def _read_sections(root: Path, paths: list[str]) -> tuple[list[_Section], list[str]]:
    sections, binary = [], []
    for path in paths:
        data = read_confined(root, path, MAX_READ_BYTES)
        try:
            text = data.decode("utf-8") if data is not None else None
        except UnicodeDecodeError:
            text = None
        if text is None or "\x00" in text:
            binary.append(path)
            continue
        sections.append(_Section(path, _section(path, text, None), _section(path, text, _outline(path, text)),
                                 len(data or b"")))
    return sections, binary


def _choose(sections: list[_Section], budget: int, focus: tuple[str, ...]) -> dict[str, str]:
    """Full text where it fits (focus first, then smallest), outlines elsewhere, nothing if even that is too much."""
    if sum(estimate_tokens(s.full) for s in sections) <= budget:
        return {s.path: s.full for s in sections}
    chosen = {s.path: s.outline for s in sections}
    used = sum(estimate_tokens(s.outline) for s in sections)
    # Outlines of the largest files go first when even outlines do not fit.
    for section in sorted(sections, key=lambda s: (s.path in focus, -s.size)):
        if used <= budget:
            break
        used -= estimate_tokens(chosen[section.path])
        chosen[section.path] = ""
    ranked = sorted(sections, key=lambda s: (s.path not in focus, focus.index(s.path) if s.path in focus else 0,
                                             s.size))
    for section in ranked:
        extra = estimate_tokens(section.full) - estimate_tokens(chosen[section.path] or "")
        if used + extra <= budget:
            chosen[section.path] = section.full
            used += extra
    return chosen


def _section(path: str, text: str, outline: str | None) -> str:
    body = text if outline is None else outline
    lines = text.count("\n") + (0 if text.endswith("\n") else 1)
    title = f"### {path}" if outline is None else f"### {path} (outline of {lines} lines; not the full file)"
    return f"{title}\n{fenced(body, LANGUAGES.get(Path(path).suffix.lower(), ''))}\n"


def fenced(text: str, language: str = "") -> str:
    """`text` in a code fence longer than any backtick run inside it, so the fence cannot end early."""
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}{language}\n{text.rstrip(chr(10))}\n{fence}"


def _outline(path: str, text: str) -> str:
    if path.endswith(".py"):
        outline = python_outline(text)
        if outline is not None:
            return outline
    lines = text.splitlines()
    if len(lines) <= HEAD_LINES:
        return text
    return "\n".join(lines[:HEAD_LINES]) + f"\n... ({len(lines) - HEAD_LINES} more lines)\n"


def python_outline(source: str) -> str | None:
    """Imports, constants, and every function and class signature with its docstring; None if it does not parse."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return None
    parts = []
    if docstring := ast.get_docstring(tree):
        parts.append(f'"""{_first_paragraph(docstring)}"""')
    for node in tree.body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            parts.append(ast.unparse(node))
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            parts.append(_short(ast.unparse(node)))
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            parts.append(ast.unparse(_stub(node)))
        elif isinstance(node, ast.If) and "__main__" in ast.unparse(node.test):
            parts.append(f"if {ast.unparse(node.test)}:\n    ...")
    return "\n".join(parts) + "\n"


def _stub(node: ast.AST) -> ast.AST:
    """A copy of a def or class reduced to its signature, docstring and (for a class) its members' stubs."""
    stub = copy.copy(node)
    body: list[ast.stmt] = []
    if docstring := ast.get_docstring(node):  # type: ignore[arg-type]
        body.append(ast.Expr(ast.Constant(_first_paragraph(docstring))))
    if isinstance(node, ast.ClassDef):
        for child in node.body:
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                body.append(_stub(child))  # type: ignore[arg-type]
            elif isinstance(child, (ast.Assign, ast.AnnAssign)):
                body.append(child)
    if not isinstance(node, ast.ClassDef) or not body:
        body.append(ast.Expr(ast.Constant(...)))
    stub.body = body  # type: ignore[attr-defined]
    return stub


def _first_paragraph(docstring: str) -> str:
    return docstring.strip().split("\n\n", 1)[0].strip()


def _short(text: str, limit: int = 120) -> str:
    first = text.splitlines()[0] if text else text
    return first if len(first) <= limit and first == text else first[:limit] + " ..."


def _kib(size: int) -> str:
    return f"{size / 1024:.1f} KiB" if size >= 1024 else f"{size} bytes"
