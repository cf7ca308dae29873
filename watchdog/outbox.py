"""The notification outbox: every message waits here until it is sent or dead.

A message is written (committed, in the state file) when the event happens and
before any delivery is tried, so a kill -9 loses none; each channel's worker
takes its oldest waiting message, so one incident's messages arrive in order
(a Slack thread needs its first message first). `(channel, event_key)` is
unique: the same event is never queued twice for a channel. A message whose
send was cut by a crash is sent again after the restart (at least once: the
delivery id lets a receiver drop the repeat, and PagerDuty's dedup key does).

`SqliteOutbox` shares the store's connection (event loop thread only);
`MemoryOutbox` is the same thing without a file (tests, `run --once`).
"""

from __future__ import annotations

import itertools
import json
import sqlite3
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, Protocol

from watchdog.escalation import Event
from watchdog.codec import jsonable
from watchdog.store import StoreError, canonical


@dataclass(frozen=True)
class Pending:
    id: int
    channel: str
    event: Event
    dry_run: bool
    attempts: int
    next_at: float  # unix seconds: a retry's earliest time survives a restart
    state: str = "pending"
    last_error: str | None = None


class Outbox(Protocol):
    def enqueue(self, channel: str, event_key: str, event: Event, dry_run: bool, now: datetime) -> int | None: ...
    def head(self, channel: str) -> Pending | None: ...
    def mark_sent(self, id: int, now: datetime) -> None: ...
    def mark_retry(self, id: int, attempts: int, next_at: float, error: str) -> None: ...
    def mark_dead(self, id: int, attempts: int, now: datetime, error: str) -> None: ...
    def thread(self, channel: str, incident: str) -> str | None: ...
    def set_thread(self, channel: str, incident: str, ref: str) -> None: ...
    def counts(self, channel: str) -> dict[str, int]: ...
    def dead(self, channel: str | None = None, limit: int = 50) -> list[Pending]: ...
    def strand(self, channels: set[str], now: datetime) -> int: ...


def event_to_json(event: Event) -> str:
    return canonical(jsonable(event))


def event_from_json(text: str) -> Event:
    d = json.loads(text)
    d["at"] = datetime.fromisoformat(d["at"])
    return Event(**d)


class SqliteOutbox:
    _COLS = "id, channel, event, dry_run, attempts, next_at, state, last_error"

    def __init__(self, db: sqlite3.Connection, path: str = "state file"):
        self._db = db
        self._path = path

    def _write(self, sql: str, args: tuple[Any, ...]) -> sqlite3.Cursor:
        try:
            return self._db.execute(sql, args)
        except sqlite3.Error as exc:
            raise StoreError(f"state_path {self._path}: cannot write the outbox: {exc}") from None

    def enqueue(self, channel: str, event_key: str, event: Event, dry_run: bool, now: datetime) -> int | None:
        cur = self._write(
            "INSERT OR IGNORE INTO outbox (channel, event_key, target, incident, kind, event, dry_run, state, attempts,"
            " created_at, next_at) VALUES (?, ?, ?, ?, ?, ?, ?, 'pending', 0, ?, ?)",
            (channel, event_key, event.target, event.incident, event.kind, event_to_json(event), int(dry_run),
             now.isoformat(), now.timestamp()),
        )
        return cur.lastrowid if cur.rowcount else None

    def _pending(self, row: tuple[Any, ...]) -> Pending:
        id_, channel, event, dry, attempts, next_at, state, error = row
        return Pending(id_, channel, event_from_json(event), bool(dry), attempts, next_at, state, error)

    def head(self, channel: str) -> Pending | None:
        row = self._db.execute(
            f"SELECT {self._COLS} FROM outbox WHERE channel = ? AND state = 'pending' ORDER BY id LIMIT 1", (channel,)
        ).fetchone()
        return self._pending(row) if row else None

    def mark_sent(self, id: int, now: datetime) -> None:
        self._write("UPDATE outbox SET state = 'sent', attempts = attempts + 1, done_at = ?, last_error = NULL"
                    " WHERE id = ?", (now.isoformat(), id))

    def mark_retry(self, id: int, attempts: int, next_at: float, error: str) -> None:
        self._write("UPDATE outbox SET attempts = ?, next_at = ?, last_error = ? WHERE id = ?", (attempts, next_at, error, id))

    def mark_dead(self, id: int, attempts: int, now: datetime, error: str) -> None:
        self._write("UPDATE outbox SET state = 'dead', attempts = ?, done_at = ?, last_error = ? WHERE id = ?",
                    (attempts, now.isoformat(), error, id))

    def thread(self, channel: str, incident: str) -> str | None:
        row = self._db.execute("SELECT ref FROM notify_threads WHERE channel = ? AND incident = ?",
                               (channel, incident)).fetchone()
        return row[0] if row else None

    def set_thread(self, channel: str, incident: str, ref: str) -> None:
        self._write("INSERT OR IGNORE INTO notify_threads (channel, incident, ref) VALUES (?, ?, ?)", (channel, incident, ref))

    def counts(self, channel: str) -> dict[str, int]:
        rows = self._db.execute("SELECT state, count(*) FROM outbox WHERE channel = ? GROUP BY state", (channel,))
        return {"pending": 0, "sent": 0, "dead": 0, **{state: n for state, n in rows}}

    def dead(self, channel: str | None = None, limit: int = 50) -> list[Pending]:
        where = "state = 'dead'" + (" AND channel = ?" if channel else "")
        args: tuple[Any, ...] = ((channel,) if channel else ()) + (limit,)
        rows = self._db.execute(f"SELECT {self._COLS} FROM outbox WHERE {where} ORDER BY id DESC LIMIT ?", args)
        return [self._pending(r) for r in rows]

    def strand(self, channels: set[str], now: datetime) -> int:
        """Dead-letter the waiting messages of channels no longer configured (nothing would ever send them)."""
        rows = self._db.execute("SELECT DISTINCT channel FROM outbox WHERE state = 'pending'").fetchall()
        gone = [c for (c,) in rows if c not in channels]
        n = 0
        for channel in gone:
            cur = self._write("UPDATE outbox SET state = 'dead', done_at = ?, last_error = ? WHERE channel = ? AND"
                              " state = 'pending'", (now.isoformat(), "channel no longer configured", channel))
            n += cur.rowcount
        return n

    def last_audit_seq(self) -> int | None:
        """The newest audit record queued here (keys `audit-<seq>`); None when none ever was."""
        row = self._db.execute(
            "SELECT max(CAST(substr(event_key, 7) AS INTEGER)) FROM outbox WHERE event_key LIKE 'audit-%'").fetchone()
        return int(row[0]) if row and row[0] is not None else None

    def prune(self, now: datetime, keep_sent: timedelta = timedelta(days=7), keep_dead: timedelta = timedelta(days=30)) -> int:
        """Delivered rows are only a cache of the audit log (which keeps every result): drop the old ones."""
        cur = self._write(
            "DELETE FROM outbox WHERE (state = 'sent' AND done_at < ?) OR (state = 'dead' AND done_at < ?)",
            ((now - keep_sent).isoformat(), (now - keep_dead).isoformat()),
        )
        return cur.rowcount


class MemoryOutbox:
    def __init__(self) -> None:
        self._rows: dict[int, Pending] = {}
        self._keys: set[tuple[str, str]] = set()
        self._threads: dict[tuple[str, str], str] = {}
        self._ids = itertools.count(1)

    def enqueue(self, channel: str, event_key: str, event: Event, dry_run: bool, now: datetime) -> int | None:
        if (channel, event_key) in self._keys:
            return None
        self._keys.add((channel, event_key))
        id_ = next(self._ids)
        self._rows[id_] = Pending(id_, channel, event, dry_run, 0, now.timestamp())
        return id_

    def head(self, channel: str) -> Pending | None:
        return next((p for p in self._rows.values() if p.channel == channel and p.state == "pending"), None)

    def mark_sent(self, id: int, now: datetime) -> None:
        self._rows.pop(id, None)  # nothing to keep in memory: the audit has it

    def mark_retry(self, id: int, attempts: int, next_at: float, error: str) -> None:
        self._rows[id] = replace(self._rows[id], attempts=attempts, next_at=next_at, last_error=error)

    def mark_dead(self, id: int, attempts: int, now: datetime, error: str) -> None:
        self._rows[id] = replace(self._rows[id], state="dead", attempts=attempts, last_error=error)

    def thread(self, channel: str, incident: str) -> str | None:
        return self._threads.get((channel, incident))

    def set_thread(self, channel: str, incident: str, ref: str) -> None:
        self._threads.setdefault((channel, incident), ref)

    def counts(self, channel: str) -> dict[str, int]:
        out = {"pending": 0, "sent": 0, "dead": 0}
        for p in self._rows.values():
            if p.channel == channel:
                out[p.state] += 1
        return out

    def dead(self, channel: str | None = None, limit: int = 50) -> list[Pending]:
        rows = [p for p in self._rows.values() if p.state == "dead" and channel in (None, p.channel)]
        return rows[::-1][:limit]

    def strand(self, channels: set[str], now: datetime) -> int:
        gone = [p for p in self._rows.values() if p.state == "pending" and p.channel not in channels]
        for p in gone:
            self._rows[p.id] = replace(p, state="dead", last_error="channel no longer configured")
        return len(gone)
