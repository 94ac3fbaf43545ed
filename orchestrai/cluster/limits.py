"""One owner for the rate limits and the budget of a batch spread over a Ray cluster.

Every worker's engine talks to `RemoteRateLimits` and `RemoteBudget`, which have the API of the
engine's own `RateLimits`/`SlidingWindowLimiter` and `Budget` (acquire/release, reserve/settle),
so the engine runs unchanged. Each call is forwarded to one async `LimitsActor`, which holds the
real limiters and the real budget: a provider's 60-second window and the batch's budget are
counted once for the whole cluster, however many workers there are.

A worker can die holding a permit (a `max_concurrent` slot) or a reservation. The actor notes
each one's owner (node, pid) and, for owners on its own node, checks every second that they are
alive: a dead owner's permits are released, and its reservations are counted as spent at their
worst case (the call may have been billed). Owners on other nodes cannot be probed from here;
their permits expire after LEASE_S.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import time
from dataclasses import dataclass
from typing import Any

from ..engine.budget import Budget, BudgetExceeded, Reservation
from ..engine.ratelimit import MARGIN_S, WINDOW_S, Permit, RateLimits, SlidingWindowLimiter
from ..policies import ProviderRateLimits, RateLimit

LEASE_S = 900.0  # a permit held this long by an owner we cannot probe is taken back
REAP_EVERY_S = 1.0
Owner = tuple[str, int]  # (Ray node id, pid)

_tickets = itertools.count()


def _ticket() -> str:
    return f"{os.getpid()}-{next(_tickets)}"


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:  # a zombie is dead for our purposes
            return stat.read().rsplit(")", 1)[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False
    except OSError:  # no /proc (not Linux): fall back to a signal probe
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True


class LimitsActor:
    """The real limiters and budget. Wrapped with `ray.remote` by `start_limits_actor`."""

    def __init__(self, budget_usd: float | None, window_s: float = WINDOW_S + MARGIN_S) -> None:
        import ray

        self.node_id = ray.get_runtime_context().get_node_id()
        self.window_s = window_s
        self.budget = Budget(budget_usd)
        self.limiters: dict[tuple[str, str | None], SlidingWindowLimiter] = {}
        self.permits: dict[str, tuple[SlidingWindowLimiter, Permit, Owner, float]] = {}
        self.reservations: dict[str, tuple[Reservation, Owner]] = {}
        self.abandoned: set[str] = set()
        self.reclaimed = 0  # permits and reservations taken back from dead owners (tests read it)
        self._reaper: asyncio.Task[None] | None = None

    async def acquire(self, key: tuple[str, str | None], limit: RateLimit, tokens: int, priority: tuple[int, int],
                      ticket: str, owner: Owner) -> bool:
        self._start_reaper()
        if key not in self.limiters:
            self.limiters[key] = SlidingWindowLimiter(limit, window_s=self.window_s)
        limiter = self.limiters[key]
        permit = await limiter.acquire(tokens, priority)
        if ticket in self.abandoned:  # the caller gave up (cancelled) before the permit came
            self.abandoned.discard(ticket)
            limiter.release(permit, None)
            return False
        self.permits[ticket] = (limiter, permit, owner, time.monotonic())
        return True

    async def release(self, ticket: str, actual_tokens: int | None) -> None:
        held = self.permits.pop(ticket, None)
        if held is not None:
            held[0].release(held[1], actual_tokens)

    async def abandon(self, ticket: str) -> None:
        if ticket in self.permits:
            await self.release(ticket, None)
        else:
            self.abandoned.add(ticket)

    async def reserve(self, worst_usd: float, step_id: str, model: str, ticket: str,
                      owner: Owner) -> tuple[str, str | None] | None:
        """None when reserved, else the refusal's (message, hint)."""
        try:
            reservation = self.budget.reserve(worst_usd, step_id=step_id, model=model)
        except BudgetExceeded as exc:
            return exc.message + " (the batch's budget, shared by every worker)", exc.hint
        self.reservations[ticket] = (reservation, owner)
        self._start_reaper()
        return None

    async def settle(self, ticket: str, actual_usd: float | None) -> None:
        held = self.reservations.pop(ticket, None)
        if held is not None:
            self.budget.settle(held[0], actual_usd)

    async def state(self) -> dict[str, Any]:
        return {"spent": self.budget.spent, "reserved": self.budget.reserved, "exhausted": self.budget.exhausted,
                "permits": len(self.permits), "reservations": len(self.reservations), "reclaimed": self.reclaimed}

    def _start_reaper(self) -> None:
        if self._reaper is None:
            self._reaper = asyncio.get_running_loop().create_task(self._reap_forever())

    async def _reap_forever(self) -> None:
        while True:
            await asyncio.sleep(REAP_EVERY_S)
            self.reap()

    def reap(self) -> None:
        now = time.monotonic()
        for ticket, (_, _, owner, since) in list(self.permits.items()):
            if not self._owner_alive(owner) or now - since > LEASE_S:
                self.reclaimed += 1
                limiter, permit = self.permits.pop(ticket)[:2]
                limiter.release(permit, None)
        for ticket, (reservation, owner) in list(self.reservations.items()):
            if not self._owner_alive(owner):  # its call may have been billed: count the worst case
                self.reclaimed += 1
                del self.reservations[ticket]
                self.budget.settle(reservation, reservation.amount)

    def _owner_alive(self, owner: Owner) -> bool:
        node, pid = owner
        return node != self.node_id or _alive(pid)


def start_limits_actor(budget_usd: float | None, *, window_s: float = WINDOW_S + MARGIN_S) -> Any:
    """The batch's one LimitsActor (async: waiting acquires do not block each other)."""
    import ray

    actor_class = ray.remote(num_cpus=0, max_restarts=0)(LimitsActor)
    return actor_class.remote(budget_usd, window_s)


def owner() -> Owner:
    import ray

    return ray.get_runtime_context().get_node_id(), os.getpid()


@dataclass
class RemotePermit(Permit):
    ticket: str = ""


class RemoteLimiter(SlidingWindowLimiter):
    """A limiter whose window lives in the LimitsActor; same acquire/release as the engine's."""

    def __init__(self, actor: Any, key: tuple[str, str | None], limit: RateLimit) -> None:
        super().__init__(limit)
        self.actor, self.key = actor, key

    async def acquire(self, tokens: int, priority: tuple[int, int] = (0, 0)) -> Permit:
        ticket = _ticket()
        try:
            await self.actor.acquire.remote(self.key, self.limit, tokens, priority, ticket, owner())
        except asyncio.CancelledError:
            self.actor.abandon.remote(ticket)  # never leave a granted slot behind
            raise
        return RemotePermit(self, [time.monotonic(), float(tokens)], ticket)

    def release(self, permit: Permit, actual_tokens: int | None) -> None:
        if isinstance(permit, RemotePermit):
            self.actor.release.remote(permit.ticket, actual_tokens)  # fire and forget: nothing to wait for


class RemoteRateLimits(RateLimits):
    """`RateLimits` whose limiters are RemoteLimiters of one actor."""

    def __init__(self, settings: dict[str, ProviderRateLimits], actor: Any) -> None:
        super().__init__(settings)
        self.actor = actor

    def _get(self, key: tuple[str, str | None], limit: Any) -> SlidingWindowLimiter:
        if key not in self._limiters:
            self._limiters[key] = RemoteLimiter(self.actor, key, limit)
        return self._limiters[key]


@dataclass
class RemoteReservation(Reservation):
    ticket: str = ""


class RemoteBudget(Budget):
    """A `Budget` whose money is counted by the actor. `spent` here is this worker's own share.

    `reserve` is synchronous in the engine, so it waits for the actor's answer (a local round
    trip, about a millisecond); `settle` does not wait.
    """

    def __init__(self, limit_usd: float | None, actor: Any) -> None:
        super().__init__(limit_usd)
        self.actor = actor

    def reserve(self, worst_usd: float | None, *, step_id: str, model: str) -> Reservation:
        if self.limit_usd is None or worst_usd is None:
            return Reservation(0.0)
        import ray

        ticket = _ticket()
        refusal = ray.get(self.actor.reserve.remote(worst_usd, step_id, model, ticket, owner()))
        if refusal is not None:
            self.exhausted = True
            raise BudgetExceeded(refusal[0], hint=refusal[1])
        return RemoteReservation(worst_usd, ticket)

    def settle(self, reservation: Reservation, actual_usd: float | None) -> None:
        if isinstance(reservation, RemoteReservation):
            self.actor.settle.remote(reservation.ticket, actual_usd)
        self.spent += actual_usd or 0.0
