"""The call cache: identical provider calls are answered from SQLite instead of the network.

Key: provider type, base_url host, model, every parameter and every message (SHA-256 of their
canonical JSON). Only successful calls are stored. A cache that is corrupt, unreadable or locked
by another process is reported once and bypassed for the rest of the run: the run never fails
because of its cache.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from ..api import Completion, Message, ToolCall, Usage

FILE_NAME = "calls.sqlite"
LOCK_WAIT_S = 1.0  # how long to wait for another process's write before bypassing the cache

_SCHEMA = """CREATE TABLE IF NOT EXISTS calls (
    key TEXT PRIMARY KEY, text TEXT NOT NULL, model TEXT NOT NULL, provider TEXT NOT NULL,
    input_tokens INTEGER NOT NULL, output_tokens INTEGER NOT NULL, raw_id TEXT, created_at REAL NOT NULL,
    tool_calls TEXT)"""


def cache_key(provider_type: str, base_url: str | None, settings: dict[str, Any], messages: list[Message]) -> str:
    """A content address for one call; any change to what is sent changes it."""
    host = urlparse(base_url).netloc if base_url else ""
    material = {"provider": provider_type, "host": host, "settings": settings,
                "messages": [_message_key(m) for m in messages]}
    return hashlib.sha256(json.dumps(material, sort_keys=True, default=str).encode()).hexdigest()


def _message_key(m: Message) -> dict[str, Any]:
    # As asdict(m), 10x cheaper; tool fields only when set, so keys of plain calls stay as they were.
    entry: dict[str, Any] = {"role": m.role, "content": m.content}
    if m.tool_calls:
        entry["tool_calls"] = [[c.id, c.name, c.arguments] for c in m.tool_calls]
    if m.tool_call_id is not None:
        entry["tool_call_id"] = m.tool_call_id
    return entry


def tool_cache_key(name: str, arguments: dict[str, Any]) -> str:
    """The key of a `cacheable` tool's result for these arguments."""
    material = {"tool": name, "arguments": arguments}
    return hashlib.sha256(json.dumps(material, sort_keys=True, default=str).encode()).hexdigest()


class CallCache:
    """A SQLite-backed cache of completions. `problem` holds the reason if it was bypassed."""

    def __init__(self, directory: Path) -> None:
        self.path = directory / FILE_NAME
        self.problem: str | None = None
        self._db: sqlite3.Connection | None = None

    def get(self, key: str) -> Completion | None:
        row = self._run("SELECT text, model, provider, input_tokens, output_tokens, raw_id, tool_calls FROM calls "
                        "WHERE key = ?", (key,), fetch=True)
        if not row:
            return None
        text, model, provider, input_tokens, output_tokens, raw_id, calls = row
        tool_calls = tuple(ToolCall(*call) for call in json.loads(calls)) if calls else ()
        return Completion(text, Usage(input_tokens, output_tokens), model, provider, 0.0, raw_id, cost_usd=0.0,
                          tool_calls=tool_calls)

    def put(self, key: str, completion: Completion) -> None:
        calls = json.dumps([[c.id, c.name, c.arguments] for c in completion.tool_calls]) if completion.tool_calls \
            else None
        self._run("INSERT OR REPLACE INTO calls VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                  (key, completion.text, completion.model, completion.provider, completion.usage.input_tokens,
                   completion.usage.output_tokens, completion.raw_id, time.time(), calls), commit=True)

    def put_text(self, key: str, text: str) -> None:
        """A tool's result (no model, no tokens)."""
        self.put(key, Completion(text, Usage(), "tool", "tool", 0.0))

    def stats(self) -> dict[str, Any]:
        row = self._run("SELECT COUNT(*), MIN(created_at), MAX(created_at) FROM calls", (), fetch=True) \
            or (0, None, None)
        size = self.path.stat().st_size if self.path.exists() else 0
        return {"path": str(self.path), "entries": row[0], "bytes": size, "oldest": row[1], "newest": row[2],
                "problem": self.problem}

    def clear(self) -> int:
        """Delete every entry; returns how many there were."""
        count = self.stats()["entries"]
        self._run("DELETE FROM calls", (), commit=True)
        self._run("VACUUM", (), commit=False)
        return int(count)

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    def _run(self, sql: str, params: tuple[Any, ...], *, fetch: bool = False, commit: bool = False) -> Any:
        if self.problem is not None:
            return None
        try:
            db = self._connect()
            cursor = db.execute(sql, params)
            result = cursor.fetchone() if fetch else None
            if commit:
                db.commit()
            return result
        except (sqlite3.DatabaseError, OSError) as exc:  # corrupt, locked, unwritable: bypass, never crash
            self.problem = f"call cache {self.path} bypassed: {exc}"
            self.close()
            return None

    def _connect(self) -> sqlite3.Connection:
        if self._db is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, timeout=LOCK_WAIT_S, isolation_level="DEFERRED")
            self._db.execute("PRAGMA journal_mode=WAL")
            # With WAL, NORMAL never corrupts the file; it only skips the fsync of each commit, which
            # blocked the event loop ~0.5 ms per cached call. A power cut may lose the last few
            # entries: a cache can afford that (those calls are simply made again).
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute(_SCHEMA)
            columns = {row[1] for row in self._db.execute("PRAGMA table_info(calls)")}
            if "tool_calls" not in columns:  # a cache file from before tools
                self._db.execute("ALTER TABLE calls ADD COLUMN tool_calls TEXT")
        return self._db
