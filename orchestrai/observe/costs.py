"""How costs are shown: a price known, partly known, or not known at all (never a made-up zero)."""

from __future__ import annotations


def money(cost: float | None) -> str:
    """One cost: `$0.0123`, or `—` when it is not known (the model has no price)."""
    return "—" if cost is None else f"${cost:.4f}"


def total_cost(cost: float | None, complete: bool = True) -> str:
    """A run's total: `$X`; `$X + unpriced` when some calls had no price; `—` when none had one.

    Free providers (echo, local) are priced at zero, so their runs honestly cost `$0.0000`.
    """
    if cost is None:
        return money(None)
    return money(cost) + ("" if complete else " + unpriced")
