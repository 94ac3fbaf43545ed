"""Run inputs from the command line: `--input NAME=VALUE`, `--input-file NAME=PATH`, and stdin."""

from __future__ import annotations

from pathlib import Path
from typing import IO

from ..errors import InputError


def parse_inputs(pairs: list[str], file_pairs: list[str]) -> dict[str, str]:
    """Named inputs from NAME=VALUE and NAME=PATH strings; later ones win."""
    inputs: dict[str, str] = {}
    for pair in pairs:
        name, value = _split(pair, "--input", "VALUE")
        inputs[name] = value
    for pair in file_pairs:
        name, path = _split(pair, "--input-file", "PATH")
        try:
            inputs[name] = Path(path).expanduser().read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) else exc
            raise InputError(f"--input-file {name}: cannot read {path}: {reason}",
                             hint="check the path; the file must be UTF-8 text") from None
    return inputs


def read_piped_stdin(stream: IO[str]) -> str | None:
    """The text piped to us, or None when stdin is a terminal, closed or empty."""
    try:
        if stream is None or stream.isatty():
            return None
        text = stream.read()
    except (OSError, ValueError):
        return None
    return text if text.strip() else None


def _split(pair: str, flag: str, what: str) -> tuple[str, str]:
    name, sep, value = pair.partition("=")
    if not sep or not name.strip():
        raise InputError(f"{flag} {pair!r}: expected NAME={what}",
                         hint=f'for example {flag} request="..."' if what == "VALUE"
                         else f"for example {flag} request=brief.txt")
    return name.strip(), value
