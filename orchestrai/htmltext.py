"""Text for the self-contained HTML pages (the eval report, the run report): outputs shown for reading,
and word diffs. Everything returned as HTML is escaped: outputs are untrusted model text."""

from __future__ import annotations

import difflib
import json
import re
from html import escape


def display_text(value: object) -> str:
    """An output for reading: several final outputs each under its name, structured values indented."""
    if isinstance(value, dict) and value and all(isinstance(v, str) for v in value.values()):
        return "\n\n".join(f"[{name}]\n{text}" for name, text in value.items())
    return value if isinstance(value, str) else json.dumps(value, indent=2, ensure_ascii=False, default=str)


def word_diff(before: str, after: str) -> str:
    """`after` against `before` word by word: removed words in <del>, added ones in <ins> (escaped)."""
    old, new = re.findall(r"\s+|\S+", before), re.findall(r"\s+|\S+", after)
    parts = []
    for op, a1, a2, b1, b2 in difflib.SequenceMatcher(None, old, new, autojunk=False).get_opcodes():
        if op == "equal":
            parts.append(escape("".join(old[a1:a2])))
            continue
        if a2 > a1:
            parts.append(f"<del>{escape(''.join(old[a1:a2]))}</del>")
        if b2 > b1:
            parts.append(f"<ins>{escape(''.join(new[b1:b2]))}</ins>")
    return "".join(parts)
