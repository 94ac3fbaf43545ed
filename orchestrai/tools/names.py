"""Tool names as providers accept them: `^[a-zA-Z0-9_-]{1,64}$` (OpenAI's and Anthropic's rule).

A pipeline names tools `add` or `weather.forecast`; on the wire that is `add` and `weather__forecast`,
and the engine maps the model's calls back through the step's own table, so a name the step did not
offer can never reach a tool.
"""

from __future__ import annotations

import hashlib
import re

WIRE_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
_UNSAFE = re.compile(r"[^a-zA-Z0-9_-]")


def wire_name(name: str) -> str:
    """`weather.forecast` -> `weather__forecast`; other characters become `_`; a name over 64 characters
    keeps its first 55 and a short hash of the whole, so two long names stay apart."""
    wire = _UNSAFE.sub("_", name.replace(".", "__")) or "tool"
    if len(wire) > 64:
        wire = wire[:55] + "_" + hashlib.sha256(name.encode()).hexdigest()[:8]
    return wire
