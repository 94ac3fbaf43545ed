"""The JSON memory log of a run: a durable journal while it runs, one JSON file when it ends.

Each finished step is appended to `<name>.journal.jsonl` and flushed at once, so a crash, Ctrl-C or
SIGKILL keeps every finished step (O(1) per step, never a rewrite of the whole file). When the run
ends the complete log is written to `<name>.json` via a temporary file and an atomic rename, and
the journal is removed. `read_log` turns a journal left by a killed run back into a log.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import orjson

from ..api import Event, Notice, RunDrained, RunFinished, RunStarted, StepEnded, StepRecord
from ..api.events import chained

JOURNAL_SUFFIX = ".journal.jsonl"
# Run fields that grow with the pipeline (an edge list of a 2,000-step graph): one compact line each,
# not the indented pure-Python encoding of the small fields (which cost 8 µs a step on `edges`).
COMPACT_KEYS = ("edges",)
_second_text: tuple[int, str] = (0, "1970-01-01T00:00:00")  # the last whole second formatted, and its text


def iso(timestamp: float | None) -> str | None:
    """UTC ISO 8601 with milliseconds, as datetime.isoformat(timespec="milliseconds") writes it.

    The date and time up to the second are formatted once per second: a step's log entry has
    three or more timestamps, and datetime formatting was a fifth of the log's cost.
    """
    global _second_text
    if not timestamp:
        return None
    second = int(timestamp)
    millis = round((timestamp - second) * 1_000_000) // 1000  # rounded to µs first, as datetime does
    if millis >= 1000:
        second, millis = second + 1, millis - 1000
    if second != _second_text[0]:
        _second_text = (second, datetime.fromtimestamp(second, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S"))
    return _second_text[1] + _MILLIS[millis]


_MILLIS = tuple(f".{millis:03d}+00:00" for millis in range(1000))


def to_json(value: Any) -> str:
    """Compact JSON; anything JSON has no type for is written as its str(). orjson: 10x the standard encoder."""
    return orjson.dumps(value, default=str, option=orjson.OPT_NON_STR_KEYS).decode()


def step_json(record: StepRecord) -> dict[str, Any]:
    """A step as the memory log stores it."""
    return {
        "id": record.id,
        "module": record.module,
        "output_name": record.output_name,
        "status": record.status,
        "inputs": record.inputs,
        "output": record.output,
        "provider": record.provider,
        "model": record.model,
        "messages": record.messages,
        "usage": {"input_tokens": record.usage.input_tokens, "output_tokens": record.usage.output_tokens},
        "cost_usd": record.cost_usd,
        "started_at": iso(record.started_at),
        "finished_at": iso(record.finished_at),
        "duration_s": round(record.duration_s, 4) if record.duration_s is not None else None,
        "attempts": [{**attempt, "started_at": iso(attempt.get("started_at"))} for attempt in record.attempts],
        "cache_hits": record.cache_hits,
        "fingerprint": record.fingerprint,
        "error": record.error,
        **({"details": record.details} if record.details else {}),
        **({"parent": record.parent} if record.parent is not None else {}),
    }


class MemoryLog:
    """A hook that journals each finished step and writes the whole log when the run ends."""

    events = frozenset({RunStarted, StepEnded, Notice, RunFinished, RunDrained})

    def __init__(self, log_dir: Path, *, redact: Callable[[str], str] | None = None, fsync: bool = True) -> None:
        self.log_dir = Path(log_dir)
        # fsync=False: the final file survives the process dying (the OS has it) but not a power cut.
        # A batch's rows use it: an fsync per row would stall the event loop, and so every row running,
        # for a disk flush each; the batch's checkpoint is its results file, not the rows' logs.
        self.fsync = fsync
        # Applied to the serialized text, so no field (inputs a user typed a key into, a server's
        # error message) can carry a secret into the file. The run's own redactor (RunStarted.redact)
        # is always applied, after `redact` if one is given: redaction needs no caller's help.
        self._caller_redact = redact
        self.redact: Callable[[str], str] = redact or (lambda text: text)
        self.path: Path | None = None
        self._journal: int | None = None  # a file descriptor opened for appending
        self._header: dict[str, Any] = {}
        self._notices: list[str] = []
        # Each ended step as JSON text: written to the journal at once and reused in the final log,
        # so a step is serialized once, not twice (the cost of the log is mostly this encoding).
        self._step_texts: dict[str, str] = {}
        self._written_keys: frozenset[str] = frozenset()  # the final file's top-level keys

    @property
    def journal_path(self) -> Path | None:
        return self.path.with_name(self.path.name[: -len(".json")] + JOURNAL_SUFFIX) if self.path else None

    def on_event(self, event: Event) -> None:
        if isinstance(event, RunStarted):
            self._start(event)
        elif isinstance(event, StepEnded):
            text = to_json(step_json(event.record))
            self._step_texts[event.record.id] = text
            self._write_line('{"type":"step",' + text[1:])  # the same entry as {"type": "step", **step}
        elif isinstance(event, Notice):
            self._notices.append(event.text)
        elif isinstance(event, RunFinished):
            self._finish(event)
        elif isinstance(event, RunDrained):
            self._add_keys(event.log)

    def _start(self, event: RunStarted) -> None:
        self.redact = chained(self._caller_redact, event.redact)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(event.started_at))
        self.path = self.log_dir / f"{stamp}-{_slug(event.pipeline)}-{event.run_id}.json"
        self._header = {"run_id": event.run_id, "pipeline": event.pipeline, "pipeline_path": event.pipeline_path,
                        "started_at": iso(event.started_at), "config": event.config, "versions": event.versions,
                        "resumed_from": event.resumed_from, "dry_run": event.dry_run,
                        "edges": [list(edge) for edge in event.edges]}
        assert self.journal_path is not None
        self._journal = os.open(self.journal_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
        # step_modules is optional (it defaults to ()): without it the plan is empty and the reader shows "?".
        plan = [[step_id, *modules]
                for step_id, modules in zip(event.step_ids, event.step_modules, strict=False)]
        self._append({"type": "run", **self._header, "step_ids": list(event.step_ids), "plan": plan})

    def _append(self, entry: dict[str, Any]) -> None:
        self._write_line(to_json(entry))

    def _write_line(self, text: str) -> None:
        if self._journal is None:
            return
        # Straight to the OS, one write per line (no buffer to flush): once written, the line
        # survives the process dying, SIGKILL included.
        data = memoryview((self.redact(text) + "\n").encode())
        while data:
            data = data[os.write(self._journal, data):]

    def _finish(self, event: RunFinished) -> None:
        if self.path is None:
            return
        totals = event.totals
        document = {
            **self._header,
            "status": event.status,
            "message": event.message,
            "finished_at": iso(event.finished_at),
            "totals": {"input_tokens": totals.input_tokens, "output_tokens": totals.output_tokens,
                       "cost_usd": totals.cost_usd, "cost_complete": totals.cost_complete,
                       "duration_s": totals.duration_s, "cached_steps": totals.cached_steps,
                       "resumed_steps": totals.resumed_steps, "by_model": totals.by_model},
            "notices": self._notices,
        }
        steps = [self._step_texts.get(record.id) or to_json(step_json(record)) for record in event.records]
        write_json_atomically(self.path, map(self.redact, document_chunks(document, steps)), fsync=self.fsync)
        self._written_keys = frozenset({*document, "steps"})
        self._step_texts.clear()
        if self._journal is not None:
            os.close(self._journal)
            self._journal = None
            assert self.journal_path is not None
            self.journal_path.unlink(missing_ok=True)


    def _add_keys(self, extra: dict[str, Any]) -> None:
        """Keys handed over after the run (webhook deliveries) added to the final file, once.

        Only when a hook handed some (RunDrained is not emitted otherwise). The file's own keys, its
        "status" above all, are never replaced: the new keys go after "steps", spliced into the text
        (no parse of a possibly large log), and the file is replaced atomically again.
        """
        added = {key: value for key, value in extra.items() if key not in self._written_keys}
        if self.path is None or not added or not self.path.is_file():
            return
        text = self.path.read_text(encoding="utf-8")
        if not text.endswith("\n}\n"):
            return
        pieces = [text[: -len("\n}\n")]]
        pieces += [f",\n {json.dumps(key)}: {self.redact(to_json(value))}" for key, value in added.items()]
        write_json_atomically(self.path, [*pieces, "\n}\n"], fsync=self.fsync)
        self._written_keys |= added.keys()


def document_chunks(document: dict[str, Any], steps: list[str]) -> Iterator[str]:
    """The log as JSON, in pieces: the run's own fields indented, then `steps`, one compact JSON text per line.

    Speed: `json.dumps(indent=...)` runs the pure-Python encoder, which for a 1,000-step run took
    longer than all the steps' own bookkeeping; steps are compact JSON, already encoded per step.
    Pieces, not one string: a 10,000-step log is 20 MB, held once more (and again encoded) if joined.
    """
    compact = {key: document[key] for key in COMPACT_KEYS if key in document}  # as large as the graph
    head = json.dumps({k: v for k, v in document.items() if k not in compact}, ensure_ascii=False, indent=1,
                      default=str)[:-2]
    yield head + "".join(f',\n {json.dumps(key)}: {to_json(value)}' for key, value in compact.items()) + \
        ',\n "steps": [\n'
    for position, step in enumerate(steps):
        yield step + (",\n" if position < len(steps) - 1 else "\n")
    yield " ]\n}\n"


def write_json_atomically(path: Path, text: str | Iterable[str], *, fsync: bool = True) -> None:
    """Write to a temporary file, fsync, then rename over the target: readers see old or new, never half."""
    temporary = path.with_name(path.name + ".tmp")
    with temporary.open("w", encoding="utf-8") as handle:
        handle.writelines([text] if isinstance(text, str) else text)
        handle.flush()
        if fsync:
            os.fsync(handle.fileno())
    os.replace(temporary, path)


def read_log(path: Path) -> dict[str, Any]:
    """A run's log; a journal left behind by a killed run is rebuilt with status 'interrupted'."""
    if path.name.endswith(JOURNAL_SUFFIX):
        return _rebuild_from_journal(path)
    log: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return log


def _rebuild_from_journal(path: Path) -> dict[str, Any]:
    header: dict[str, Any] = {}
    steps: dict[str, dict[str, Any]] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            continue  # the last line of a killed run may be cut short
        kind = entry.pop("type", None)
        if kind == "run":
            header = entry
        elif kind == "step":
            steps[entry["id"]] = entry
    order = header.pop("step_ids", list(steps))
    planned = {step_id: (module, output) for step_id, module, output in header.pop("plan", [])}
    records = _with_children([steps.get(sid) or _unfinished(sid, *planned.get(sid, ("?", "?"))) for sid in order],
                             steps)
    return {**header, "status": "interrupted", "finished_at": None, "totals": totals_of(records), "steps": records,
            "recovered_from": path.name}


def _with_children(top: list[dict[str, Any]], journal: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """The planned steps, each followed by the fan-out items, loop iterations and sub-pipeline steps the
    journal holds for it (in the order they finished), as the final log orders them."""
    children: dict[str, list[dict[str, Any]]] = {}
    for entry in journal.values():
        if entry.get("parent") is not None:
            children.setdefault(entry["parent"], []).append(entry)
    ordered: list[dict[str, Any]] = []
    todo = list(reversed(top))
    while todo:
        entry = todo.pop()
        ordered.append(entry)
        todo += reversed(children.pop(entry["id"], []))
    ordered += [entry for group in children.values() for entry in group]  # a parent the journal lacks
    return ordered


def _unfinished(step_id: str, module: str, output_name: str) -> dict[str, Any]:
    """A step the journal never recorded: it was running or waiting when the process died."""
    return {"id": step_id, "module": module, "output_name": output_name, "status": "interrupted", "inputs": {},
            "output": None, "provider": None, "model": None, "messages": [],
            "usage": {"input_tokens": 0, "output_tokens": 0}, "cost_usd": None, "started_at": None,
            "finished_at": None, "duration_s": None, "attempts": [], "cache_hits": 0, "fingerprint": None,
            "error": "the process ended before this step finished"}


def totals_of(steps: list[dict[str, Any]]) -> dict[str, Any]:
    """The totals of logged steps, as `summarize` computes them (cost None when no call had a price)."""
    calling = [s for s in steps if s.get("provider")]
    complete = all(s["cost_usd"] is not None for s in calling)
    priced = complete or any(s["cost_usd"] is not None for s in calling)
    return {"input_tokens": sum(s["usage"]["input_tokens"] for s in steps),
            "output_tokens": sum(s["usage"]["output_tokens"] for s in steps),
            "cost_usd": round(sum(s["cost_usd"] or 0.0 for s in steps), 6) if priced else None,
            "cost_complete": complete,
            "duration_s": None,
            "cached_steps": sum(1 for s in steps if s["status"] == "cached"),
            "resumed_steps": sum(1 for s in steps if s["status"] == "resumed")}


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-") or "pipeline"
