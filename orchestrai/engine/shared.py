"""What many runs in one process share: a batch's rows, an eval's tests.

One provider pool (so one connection pool per provider, not one per row), one set of rate limiters
(a provider's limit holds across every run), one budget (no run may start a call that could cross
it) and one call cache. Made once, handed to each run in `RunOptions.shared`, closed once: a run
given one neither makes its own nor closes them.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from typing import Any

from ..config import Config
from ..providers.pool import ProviderPool
from .budget import Budget
from .cache import CallCache
from .ratelimit import RateLimits


@dataclass
class Shared:
    providers: ProviderPool
    rate_limits: RateLimits
    budget: Budget
    cache: CallCache | None

    @classmethod
    def open(cls, config: Config, *, budget_usd: float | None = None, use_cache: bool = True, dry_run: bool = False,
             providers: dict[str, Any] | None = None) -> Shared:
        """Resources for runs of `config`; `budget_usd` default: the config's."""
        pool = ProviderPool(config, force="echo" if dry_run else None, preset=providers or {})
        cache = CallCache(config.cache_dir) if config.file.cache and use_cache and not dry_run else None
        return cls(pool, RateLimits(config.rate_limits), Budget(budget_usd or config.file.budget_usd), cache)

    async def aclose(self) -> None:
        if self.cache is not None:
            self.cache.close()
        with contextlib.suppress(Exception, asyncio.CancelledError):
            await asyncio.shield(self.providers.aclose())
