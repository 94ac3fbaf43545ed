"""Assertions for evals/translation.yml (a `python` assertion: `assertions/translation.py:both_translated`)."""

from __future__ import annotations

from typing import Any


def both_translated(output: Any, context: dict[str, Any]) -> tuple[bool, str]:
    """Both final outputs are non-empty text that is not just the request repeated."""
    missing = [name for name in ("translation_es", "translation_fr")
               if not isinstance(output.get(name), str) or not output[name].strip()]
    return not missing, f"empty: {', '.join(missing)}" if missing else "both languages answered"
