"""Money: which models are free or priced, and the run's budget guard.

Before each call the worst case (input estimate + max_tokens at the model's price) is reserved
against what is left; a call that could cross the budget is not made. After the call the
reservation is replaced by the real cost.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..errors import OrchestraiError
from ..providers.pricing import PriceTable

if TYPE_CHECKING:
    from ..config import Config
    from ..modules.base import ModuleRegistry
    from ..pipeline.spec import Step

UNSET_MAX_TOKENS_ESTIMATE = 4096  # worst case assumed for a call without max_tokens


class BudgetExceeded(OrchestraiError):
    """A call was not made because it could have crossed the budget."""

    exit_code = 3


def price_table(config: Config) -> PriceTable:
    return PriceTable({name: (p.input, p.output) for name, p in config.file.pricing.items()})


def unpriced_models(step: Step, config: Config, registry: ModuleRegistry) -> list[tuple[str, str]]:
    """Under a budget every model a step may call needs a price: (message, hint) for each that has none."""
    info = registry.resolve(step.module)
    if info is None or info.kind == "builtin" and step.module == "start_module":
        return []
    prices = price_table(config)
    candidates = [(step.model_settings.get("provider"), step.model_settings.get("model")), *
                  ((f["provider"], f["model"]) for f in step.fallbacks)]
    problems = []
    for provider, model in candidates:
        if provider and model and provider in config.provider_names() and not config.is_free(provider) \
                and prices.price(str(model)) is None:
            problems.append((f"step {step.id!r}: model {model!r} has no known price, but the run has a budget",
                             f"add pricing: {{{model}: {{input: USD_PER_1M, output: USD_PER_1M}}}} to config.yml"))
    return problems


def estimate_tokens(text_chars: int) -> int:
    """A deliberately high estimate of prompt tokens (about 3 characters a token; real text is ~4)."""
    return text_chars // 3 + 1


@dataclass
class Reservation:
    amount: float


class Budget:
    """What a run may still spend. One per run; every step's calls go through it."""

    def __init__(self, limit_usd: float | None) -> None:
        self.limit_usd = limit_usd
        self.spent = 0.0
        self.reserved = 0.0
        self.exhausted = False

    def reserve(self, worst_usd: float | None, *, step_id: str, model: str) -> Reservation:
        """Hold the worst case of one call, or raise BudgetExceeded without making it."""
        if self.limit_usd is None or worst_usd is None:
            return Reservation(0.0)
        if self.spent + self.reserved + worst_usd > self.limit_usd:
            self.exhausted = True
            raise BudgetExceeded(
                f"step {step_id!r}: a call to {model} could cost up to ${worst_usd:.4f}, but only "
                f"${self.limit_usd - self.spent - self.reserved:.4f} of the ${self.limit_usd:.4f} budget is left",
                hint="raise budget_usd (or --budget), lower max_tokens, or pick a cheaper model")
        self.reserved += worst_usd
        return Reservation(worst_usd)

    def settle(self, reservation: Reservation, actual_usd: float | None) -> None:
        self.reserved -= reservation.amount
        self.spent += actual_usd or 0.0
