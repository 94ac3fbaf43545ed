"""Where a record belongs: fan-out items, loop iterations and sub-pipeline steps under their step.

Ids carry the nesting: `findings[3]` is item 3 of `findings`, `refine#2/draft` is step `draft` of
iteration 2 of loop `refine`, `research/plan` and `research[2]/plan` are sub-pipeline steps of
`research` and of its item 2. A step's own name never holds `[`, `#` or `/` (names.NAME_PATTERN),
so the id alone says where a record belongs: the live view needs that, since StepStarted carries
no parent; a finished record says it itself (`StepRecord.parent`, the log's `parent` key).

The progress views, the summary table and `orchestrai logs show` fold children into their step
with these helpers; they work on StepRecords and on the log's step dicts alike.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from .costs import total_cost

T = TypeVar("T")

_ITEM = re.compile(r"\[(\d+)\]$")
_ITERATION = re.compile(r"#(\d+)$")


def parent_of(step_id: str) -> str | None:
    """The id of the record `step_id` is part of, or None for a top-level step."""
    if step_id.endswith("]") and (item := _ITEM.search(step_id)):
        return step_id[: item.start()]
    head, slash, _ = step_id.rpartition("/")
    if not slash:
        return None
    iteration = _ITERATION.search(head)  # `refine#2/draft` belongs to the loop `refine`
    return head[: iteration.start()] if iteration else head


def is_item(step_id: str) -> bool:
    """Whether `step_id` is one item of a fan-out (`findings[3]`)."""
    return step_id.endswith("]") and _ITEM.search(step_id) is not None


def iteration_of(step_id: str) -> int | None:
    """The loop iteration a body step ran in (`refine#2/draft` -> 2), or None."""
    iteration = _ITERATION.search(step_id.rpartition("/")[0])
    return int(iteration.group(1)) if iteration else None


def depth_of(step_id: str) -> int:
    """How many records `step_id` is nested in (0 for a top-level step)."""
    depth, parent = 0, parent_of(step_id)
    while parent is not None:
        depth, parent = depth + 1, parent_of(parent)
    return depth


def nest(entries: Iterable[T], key: Callable[[T], tuple[str, str | None]]) -> tuple[list[T], dict[str, list[T]]]:
    """The top-level entries in order, and each entry's children in order (by id).

    `key` gives an entry's id and parent. A child whose parent is missing (a log cut short) hangs
    under its nearest ancestor that is there, or is shown at the top level: nothing is hidden.
    """
    listed = list(entries)
    ids = {key(entry)[0] for entry in listed}
    top: list[T] = []
    children: dict[str, list[T]] = {}
    for entry in listed:
        parent = key(entry)[1]
        while parent is not None and parent not in ids:
            parent = parent_of(parent)
        if parent is None:
            top.append(entry)
        else:
            children.setdefault(parent, []).append(entry)
    return top, children


@dataclass
class Sums:
    """Tokens and cost of a record, or of the records nested in it."""

    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    priced: bool = False  # some call had a price
    unpriced: bool = False  # some call had none
    called: bool = False  # any provider call was made

    def add(self, other: Sums) -> None:
        self.input_tokens += other.input_tokens
        self.output_tokens += other.output_tokens
        self.cost_usd += other.cost_usd
        self.priced |= other.priced
        self.unpriced |= other.unpriced
        self.called |= other.called

    @property
    def empty(self) -> bool:
        return not (self.called or self.input_tokens or self.output_tokens or self.priced)

    def cost_text(self) -> str:
        """As a run's total: `$X`, `$X + unpriced`, `—` (no price at all), blank when nothing was called."""
        if not self.called:
            return ""
        return total_cost(self.cost_usd if self.priced else None, not self.unpriced)


def record_sums(record: Any) -> Sums:
    """A StepRecord's own tokens and cost."""
    # A record that sums its children's calls may count none itself, yet has their cost to show.
    called = bool(record.calls) or record.cost_usd is not None
    return Sums(record.usage.input_tokens, record.usage.output_tokens, record.cost_usd or 0.0,
                record.cost_usd is not None, called and record.cost_usd is None, called)


def logged_sums(step: dict[str, Any]) -> Sums:
    """A logged step's own tokens and cost (the log has no call count: a provider means calls were made)."""
    usage = step.get("usage") or {}
    cost = step.get("cost_usd")
    called = bool(step.get("provider")) or cost is not None
    return Sums(int(usage.get("input_tokens") or 0), int(usage.get("output_tokens") or 0), float(cost or 0.0),
                cost is not None, called and cost is None, called)


def rolled_up(entry: T, children: dict[str, list[T]], key: Callable[[T], str], own: Callable[[T], Sums]) -> Sums:
    """An entry's tokens and cost, or, when it carries none itself, the sum of its children's.

    A fan-out, loop or sub-pipeline record makes no call of its own; if the engine ever sums its
    children into it, that sum is used as it is and the children are not counted twice.
    """
    mine = own(entry)
    kids = children.get(key(entry))
    if not kids or not mine.empty:
        return mine
    total = Sums()
    for kid in kids:
        total.add(rolled_up(kid, children, key, own))
    return total


def fold_text(details: dict[str, Any], kids: Sequence[tuple[str, str]]) -> str:
    """What a step holds, in words: `120 items, 2 failed`, `3 iterations`, `4 steps`.

    `kids` are the (id, status) of the step's children. The step's own item and iteration counts
    win over counting them (a budget stop leaves items that never ran, a log cut short lacks some);
    failures are counted from the items when they are there (details.failed_items lists the
    skipped ones too).
    """
    items = [status for step_id, status in kids if is_item(step_id)]
    if items or _number(details.get("items")) is not None:
        total, counts = _number(details.get("items")), Counter(items)
        failed_items = details.get("failed_items")
        failed = counts["failed"] if items or not isinstance(failed_items, list) else len(failed_items)
        return items_text(len(items) if total is None else total, failed,
                          {status: counts[status] for status in ("skipped", "interrupted")})
    iterations = _number(details.get("iterations"))  # a module's own `iterations` may be a list: not ours
    if iterations is None:
        seen = [n for step_id, _ in kids if (n := iteration_of(step_id)) is not None]
        iterations = max(seen) if seen else None
    if iterations is not None:
        return iterations_text(iterations, details.get("stopped"))
    return _count(len(kids), "step") if kids else ""


def items_text(total: int, failed: int, others: dict[str, int] | None = None) -> str:
    """`120 items, 2 failed` (and `3 skipped` and the like when `others` counts some)."""
    parts = [_count(total, "item"), *([f"{failed:,} failed"] if failed else [])]
    parts += [f"{number:,} {status}" for status, number in (others or {}).items() if number]
    return ", ".join(parts)


def iterations_text(iterations: int, stopped: object = None) -> str:
    """`3 iterations`; `4 iterations, max reached` when the loop ran them all (its `until`, if any, never held)."""
    return _count(iterations, "iteration") + (", max reached" if stopped == "max_iterations" else "")


def _number(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _count(number: int, noun: str) -> str:
    return f"{number:,} {noun}" + ("" if number == 1 else "s")
