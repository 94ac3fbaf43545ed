"""Keep secrets out of everything we write or show."""

from __future__ import annotations


class Redactor:
    """Replaces every known secret in a text with '***' before it is stored or shown."""

    def __init__(self, secrets: list[str]) -> None:
        # Short values would match ordinary text; real keys are long.
        self.secrets = sorted({s for s in secrets if len(s) >= 8}, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, "***")
        return text
