"""Model prices in USD per 1M tokens. Unknown models cost None, never a guess.

Built-in entries are the list prices OpenAI and Anthropic published for these models; newer models
are deliberately absent rather than guessed. Override or add any model under `pricing:` in
config.yml. A dated snapshot name (gpt-4o-2024-08-06,
claude-3-5-haiku-20241022) is priced as its family: the longest built-in name it starts with.
"""

from __future__ import annotations

from collections.abc import Mapping

BUILTIN_PRICES: dict[str, tuple[float, float]] = {
    "gpt-4o": (2.50, 10.00),
    "gpt-4o-mini": (0.15, 0.60),
    "gpt-4.1": (2.00, 8.00),
    "gpt-4.1-mini": (0.40, 1.60),
    "gpt-4.1-nano": (0.10, 0.40),
    "gpt-5": (1.25, 10.00),
    "gpt-5-mini": (0.25, 2.00),
    "gpt-5-nano": (0.05, 0.40),
    "o3": (2.00, 8.00),
    "o3-mini": (1.10, 4.40),
    "o4-mini": (1.10, 4.40),
    "claude-opus-4": (15.00, 75.00),
    "claude-opus-4-1": (15.00, 75.00),
    "claude-sonnet-4": (3.00, 15.00),
    "claude-sonnet-4-5": (3.00, 15.00),
    "claude-haiku-4-5": (1.00, 5.00),
    "claude-3-7-sonnet": (3.00, 15.00),
    "claude-3-5-sonnet": (3.00, 15.00),
    "claude-3-5-haiku": (0.80, 4.00),
    "claude-3-haiku": (0.25, 1.25),
}


class PriceTable:
    """Looks up a model's price: config entries first (exact name), then the built-in families."""

    def __init__(self, overrides: Mapping[str, tuple[float, float]] | None = None) -> None:
        self.overrides = dict(overrides or {})

    def price(self, model: str) -> tuple[float, float] | None:
        if model in self.overrides:
            return self.overrides[model]
        if model in BUILTIN_PRICES:
            return BUILTIN_PRICES[model]
        family = max((name for name in BUILTIN_PRICES if model.startswith(name + "-")), key=len, default=None)
        return BUILTIN_PRICES[family] if family else None

    def cost(self, model: str, input_tokens: int, output_tokens: int) -> float | None:
        price = self.price(model)
        if price is None:
            return None
        return (input_tokens * price[0] + output_tokens * price[1]) / 1_000_000
