"""How wide a line of text is drawn, estimated without a font, so SVG text can be cut to fit its box.

The advance widths are DejaVu Sans's (Debian's and many Linux browsers' `sans-serif`), one of the widest
common sans fonts, rounded up: text that fits by this estimate also fits in Helvetica, Arial, Segoe UI
or system-ui. Characters outside ASCII count as one em (CJK is about that; most others are less).
tests/test_dag.py checks the estimate against Chromium's own measurement.
"""

from __future__ import annotations

ELLIPSIS = "…"
BOLD = 1.12  # DejaVu Sans Bold against Book
_EM: dict[str, float] = {
    **dict.fromkeys("ijl", 0.29), **dict.fromkeys("ft", 0.4), "r": 0.42, **dict.fromkeys(" !'.,:;|", 0.34),
    **dict.fromkeys("sz", 0.53), "c": 0.56, **dict.fromkeys("kvxy", 0.6), **dict.fromkeys("aeo", 0.62),
    **dict.fromkeys("bdghnpqu", 0.64), "w": 0.83, "m": 0.98, "_": 0.5, "-": 0.37, **dict.fromkeys("()[]{}", 0.4),
    **dict.fromkeys("0123456789", 0.64), **dict.fromkeys("ABCDEFGHIJKLNOPQRSTUVXYZ", 0.78), "M": 0.87,
    "W": 1.0, "I": 0.3, "J": 0.3, **dict.fromkeys('"#$%&*+/<=>?@\\^`~▸…≤·', 0.85),
}


def text_width(text: str, size: float, *, bold: bool = False) -> float:
    """The drawn width of `text` at `size` px, estimated (rounded up)."""
    ems = sum(_EM.get(char, 1.0) for char in text)
    return ems * size * (BOLD if bold else 1.0)


def fit(text: str, width: float, size: float, *, bold: bool = False) -> str:
    """`text` on one line (whitespace folded), cut with an ellipsis where it would be wider than `width`."""
    text = " ".join(text.split())
    if text_width(text, size, bold=bold) <= width:
        return text
    room = width - text_width(ELLIPSIS, size, bold=bold)
    used, end = 0.0, 0
    scale = size * (BOLD if bold else 1.0)
    for end, char in enumerate(text):  # noqa: B007 - `end` is read after the loop
        used += _EM.get(char, 1.0) * scale
        if used > room:
            break
    return text[:end].rstrip() + ELLIPSIS


def split_in_two(text: str, width: float, size: float) -> tuple[str, str]:
    """`text` as two lines that each fit `width`: cut at the last space that fits (else mid-word), the
    second line cut with an ellipsis if need be."""
    text = " ".join(text.split())
    first = fit(text, width, size)
    if first == text:
        return text, ""
    head = first[:-1]  # without the ellipsis
    space = head.rfind(" ")
    cut = space if space > len(head) // 2 else len(head)
    return text[:cut].rstrip(), fit(text[cut:].lstrip(), width, size)
