"""The outbox in the state file: the SQLite implementation of outbox.Outbox.

Writes go through the store (queued to its writer thread in the daemon); reads use its reading connection.
Kept apart from outbox.py so that the notifier and the Protocol it uses never import the SQLite module.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta, timezone
from typing import Any

import structlog

from watchdog.shared.events import Event
from watchdog.state.outbox import Landed, Pending, event_from_json, event_to_json
from watchdog.state.storage import StoreError
from watchdog.state.sqlite.store import SqliteStore

log = structlog.get_logger("watchdog.state.outbox")


class SqliteOutbox:
    """Writes go through the store (queued to its writer in the daemon); reads use its reading connection."""

    _COLS = "id, channel, event, dry_run, attempts, next_at, state, last_error"

    def __init__(self, store: SqliteStore):
        self._store = store
        # Rows whose event cannot be read back (another version's kind, a hand edit): dead-lettered, and
        # skipped meanwhile, so one of them never holds up the channel's later pages.
        self._unreadable: set[int] = set()

    @property
    def _db(self) -> sqlite3.Connection:
        return self._store.reader

    def _read(self, sql: str, args: tuple[Any, ...]) -> list[Any]:
        try:
            return self._db.execute(sql, args).fetchall()
        except sqlite3.Error as exc:  # e.g. another process's exclusive lock past the busy timeout
            raise StoreError(f"state_path {self._store.path}: cannot read the outbox: {exc}") from None

    def enqueue(self, key: str, event: Event, dry_run: bool, channels: Sequence[str], now: datetime,
                audit_seq: int | None, then: Landed) -> None:
        """One row per channel and the mark of the audit event, in one transaction: a kill between the event
        and its rows is caught at the next start by the mark (`last_audit_seq`), and never re-sends."""
        text = event_to_json(event)

        def insert(db: sqlite3.Connection) -> None:
            for channel in channels:
                db.execute(
                    "INSERT OR IGNORE INTO outbox (channel, event_key, target, incident, kind, event, dry_run, state,"
                    " attempts, created_at, next_at) VALUES (?, ?, ?, ?, ?, ?, ?, 'pending', 0, ?, ?)",
                    (channel, key, event.target, event.incident, event.kind, text, int(dry_run), now.isoformat(),
                     now.timestamp()))
            if audit_seq is not None:
                db.execute("INSERT INTO outbox_mark (id, audit_seq) VALUES (1, ?) ON CONFLICT (id) DO UPDATE"
                           " SET audit_seq = max(audit_seq, excluded.audit_seq)", (audit_seq,))

        self._store.write("write the outbox", insert, lambda _: then())

    def _pending(self, row: tuple[Any, ...]) -> Pending:
        id_, channel, event, dry, attempts, next_at, state, error = row
        return Pending(id_, channel, event_from_json(event), bool(dry), attempts, next_at, state, error)

    def head(self, channel: str) -> Pending | None:
        while True:
            skip = sorted(self._unreadable)
            but = f" AND id NOT IN ({','.join('?' * len(skip))})" if skip else ""
            rows = self._read(f"SELECT {self._COLS} FROM outbox WHERE channel = ? AND state = 'pending'{but}"
                              " ORDER BY id LIMIT 1", (channel, *skip))
            if not rows:
                return None
            try:
                return self._pending(rows[0])
            except ValueError as exc:  # pydantic's ValidationError and json's errors are ValueErrors
                self._dead_letter_unreadable(rows[0][0], channel, exc)

    async def claim(self, id: int) -> bool:
        return True  # one process writes the file (its lock): whatever it holds is its own to send

    def _dead_letter_unreadable(self, id_: int, channel: str, exc: ValueError) -> None:
        self._unreadable.add(id_)
        why = f"the stored message cannot be read back: {type(exc).__name__}"
        log.critical("notification_unreadable", channel=channel, delivery=id_, why=why,
                     next="dead-lettered; the channel's later messages go on (see the outbox table)")
        now = datetime.now(timezone.utc).isoformat()
        self._store.write("write the outbox", lambda db: db.execute(
            "UPDATE outbox SET state = 'dead', done_at = ?, last_error = ? WHERE id = ?", (now, why, id_)))

    async def _update(self, sql: str, args: tuple[Any, ...]) -> None:
        await self._store.landed("write the outbox", lambda db: db.execute(sql, args))

    async def mark_sent(self, id: int, now: datetime) -> None:
        await self._update("UPDATE outbox SET state = 'sent', attempts = attempts + 1, done_at = ?, last_error = NULL"
                           " WHERE id = ?", (now.isoformat(), id))

    async def mark_retry(self, id: int, attempts: int, next_at: float, error: str) -> None:
        await self._update("UPDATE outbox SET attempts = ?, next_at = ?, last_error = ? WHERE id = ?",
                           (attempts, next_at, error, id))

    async def mark_dead(self, id: int, attempts: int, now: datetime, error: str) -> None:
        await self._update("UPDATE outbox SET state = 'dead', attempts = ?, done_at = ?, last_error = ? WHERE id = ?",
                           (attempts, now.isoformat(), error, id))

    def thread(self, channel: str, incident: str) -> str | None:
        rows = self._read("SELECT ref FROM notify_threads WHERE channel = ? AND incident = ?", (channel, incident))
        return str(rows[0][0]) if rows else None

    async def set_thread(self, channel: str, incident: str, ref: str) -> None:
        await self._update("INSERT OR IGNORE INTO notify_threads (channel, incident, ref) VALUES (?, ?, ?)",
                           (channel, incident, ref))

    def counts(self, channel: str) -> dict[str, int]:
        rows = self._read("SELECT state, count(*) FROM outbox WHERE channel = ? GROUP BY state", (channel,))
        return {"pending": 0, "sent": 0, "dead": 0, **{state: n for state, n in rows}}

    def dead(self, channel: str | None = None, limit: int = 50) -> list[Pending]:
        where = "state = 'dead'" + (" AND channel = ?" if channel else "")
        args: tuple[Any, ...] = ((channel,) if channel else ()) + (limit,)
        rows = self._db.execute(f"SELECT {self._COLS} FROM outbox WHERE {where} ORDER BY id DESC LIMIT ?", args)
        out = []
        for r in rows:
            try:
                out.append(self._pending(r))
            except ValueError:  # unreadable (dead-lettered by head): nothing of it can be shown
                continue
        return out

    def strand(self, channels: set[str], now: datetime, then: Callable[[int], None]) -> None:
        """Dead-letter the waiting messages of channels no longer configured (nothing would ever send them)."""
        kept = sorted(channels)

        def dead_letter(db: sqlite3.Connection) -> int:
            marks = ",".join("?" * len(kept))
            cur = db.execute(f"UPDATE outbox SET state = 'dead', done_at = ?, last_error = ? WHERE state = 'pending'"
                             f" AND channel NOT IN ({marks})", (now.isoformat(), "channel no longer configured", *kept))
            return int(cur.rowcount)

        self._store.write("write the outbox", dead_letter, then)

    def last_audit_seq(self) -> int | None:
        """The newest audit event the notifier has handled; None when none ever was."""
        row = self._db.execute("SELECT audit_seq FROM outbox_mark WHERE id = 1").fetchone()
        return int(row[0]) if row else None

    def prune(self, now: datetime, keep_sent: timedelta = timedelta(days=7), keep_dead: timedelta = timedelta(days=30)) -> None:
        """Delivered rows are only a cache of the audit log (which keeps every result): drop the old ones."""
        self._store.write("prune the outbox", lambda db: db.execute(
            "DELETE FROM outbox WHERE (state = 'sent' AND done_at < ?) OR (state = 'dead' AND done_at < ?)",
            ((now - keep_sent).isoformat(), (now - keep_dead).isoformat())))
