"""One running `foreach` step: its items, their records and outputs, and the join that decides the step."""

from __future__ import annotations

import time
from typing import Any

from ..api import StepRecord
from ..pipeline.spec import Step


class Fanout:
    """The items of one foreach step. Items start in order, at most `cap` ready or running at once."""

    __slots__ = ("step", "record", "items", "cap", "next", "done", "records", "_outputs", "_ok", "composite",
                 "_item_name", "_inputs")

    def __init__(self, step: Step, record: StepRecord, items: list[Any]) -> None:
        control = step.control
        assert control is not None
        self.step, self.record, self.items = step, record, items
        self.cap = control.item_concurrency or len(items) or 1
        self.composite = control.pipeline is not None  # items run sub-pipelines, whose steps take the slots
        self.next = 0  # the next item to queue
        self.done = 0
        self.records: list[StepRecord] = []  # in start order, which is item order
        self._outputs: list[Any] = [None] * len(items)
        self._ok = [False] * len(items)
        self._item_name = control.item_name
        self._inputs = record.inputs

    def start(self, number: int) -> StepRecord:
        """The record of item `number`, running, with the step's inputs and the item under its `as:` name."""
        step, parent = self.step, self.record.id
        record = StepRecord(f"{parent}[{number}]", step.module, step.output_name, parent=parent)
        record.status, record.started_at = "running", time.time()
        record.details["item"] = number
        record.inputs = {**self._inputs, self._item_name: self.items[number]}
        self.records.append(record)
        return record

    def succeeded(self, number: int, output: Any) -> None:
        record = self.records[number]  # items start in item order (the ready heap orders them by number)
        if record.status == "running":
            record.status = "cached" if record.calls and record.cache_hits == record.calls else "completed"
        record.output = output
        self._outputs[number] = output
        self._ok[number] = True

    def output(self) -> list[Any]:
        """The outputs of the items that succeeded, in item order."""
        return [value for value, ok in zip(self._outputs, self._ok, strict=True) if ok]

    def failed_ids(self) -> list[str]:
        return [record.id for record in self.records if record.status in ("failed", "skipped")]

    def summary(self) -> dict[str, Any]:
        return {"items": len(self.items), "succeeded": sum(self._ok), "failed_items": self.failed_ids()}


def join_outcome(fanout: Fanout) -> str | None:
    """None when the step succeeds under its `join:`; otherwise the step's one-line error."""
    control = fanout.step.control
    assert control is not None
    ok, total = sum(fanout._ok), len(fanout.items)
    join = control.join
    needed = total if join == "all" else 1 if join == "any" else int(join)
    if ok >= needed and (join != "all" or ok == total):
        return None
    failed = [record for record in fanout.records if record.status == "failed"]
    first = f"; first: {failed[0].id}: {(failed[0].error or '').splitlines()[0]}" if failed else ""
    rule = "join: all" if join == "all" else "join: any" if join == "any" else f"join: {{min_success: {join}}}"
    step = fanout.step
    return f"{step.location}: step {step.id!r}: {total - ok} of {total} items failed ({rule}){first}"
