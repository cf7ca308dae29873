"""The notification outbox: every message waits here until it is sent or dead.

A message is written (committed, in the state file) when the event happens, and
no delivery is tried before it has landed, so a kill -9 loses none and a delivery
id is never handed out twice; each channel's worker
takes its oldest waiting message, so one incident's messages arrive in order
(a Slack thread needs its first message first). `(channel, event_key)` is
unique: the same event is never queued twice for a channel. A message whose
send was cut by a crash is sent again after the restart (at least once: the
delivery id lets a receiver drop the repeat, and PagerDuty's dedup key does).

`SqliteOutbox` (state/sqlite/outbox.py) writes through the store (queued to its writer thread in the
daemon; a worker awaits its marks, so it never reads a message it has sent as
still waiting) and reads on the caller's thread; `MemoryOutbox` is the same
thing without a file (tests, `run --once`).
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Protocol

from watchdog.state.auditchain import canonical
from watchdog.state.codec import decode_event, encode_event
from watchdog.shared.events import Event


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


Landed = Callable[[], None]


class Outbox(Protocol):
    def enqueue(self, key: str, event: Event, dry_run: bool, channels: Sequence[str], now: datetime,
                audit_seq: int | None, then: Landed) -> None: ...
    def head(self, channel: str) -> Pending | None: ...
    # Whether this process may send message `id` now: a shared outbox's conditional claim (only one watchdog
    # sends a message); always, for an outbox of one's own.
    async def claim(self, id: int) -> bool: ...
    async def mark_sent(self, id: int, now: datetime) -> None: ...
    async def mark_retry(self, id: int, attempts: int, next_at: float, error: str) -> None: ...
    async def mark_dead(self, id: int, attempts: int, now: datetime, error: str) -> None: ...
    def thread(self, channel: str, incident: str) -> str | None: ...
    async def set_thread(self, channel: str, incident: str, ref: str) -> None: ...
    def counts(self, channel: str) -> dict[str, int]: ...
    def dead(self, channel: str | None = None, limit: int = 50) -> list[Pending]: ...
    def strand(self, channels: set[str], now: datetime, then: Callable[[int], None]) -> None: ...


def event_to_json(event: Event) -> str:
    return canonical(encode_event(event))


def event_from_json(text: str) -> Event:
    return decode_event(json.loads(text))


class OutboxRows:
    """The counts and the dead letters of an outbox held as a dict of its rows by id (in memory, a table's mirror)."""

    _rows: dict[int, Pending]

    def counts(self, channel: str) -> dict[str, int]:
        out = {"pending": 0, "sent": 0, "dead": 0}
        for p in self._rows.values():
            if p.channel == channel:
                out[p.state] += 1
        return out

    def dead(self, channel: str | None = None, limit: int = 50) -> list[Pending]:
        """Newest first."""
        rows = [self._rows[i] for i in sorted(self._rows, reverse=True)
                if self._rows[i].state == "dead" and channel in (None, self._rows[i].channel)]
        return rows[:limit]


class MemoryOutbox(OutboxRows):
    def __init__(self) -> None:
        self._rows: dict[int, Pending] = {}
        self._keys: set[tuple[str, str]] = set()
        self._threads: dict[tuple[str, str], str] = {}
        self._ids = itertools.count(1)

    def enqueue(self, key: str, event: Event, dry_run: bool, channels: Sequence[str], now: datetime,
                audit_seq: int | None, then: Landed) -> None:
        for channel in channels:
            if (channel, key) not in self._keys:
                self._keys.add((channel, key))
                id_ = next(self._ids)
                self._rows[id_] = Pending(id_, channel, event, dry_run, 0, now.timestamp())
        then()

    def head(self, channel: str) -> Pending | None:
        return next((p for p in self._rows.values() if p.channel == channel and p.state == "pending"), None)

    async def claim(self, id: int) -> bool:
        return True

    async def mark_sent(self, id: int, now: datetime) -> None:
        p = self._rows[id]
        self._rows[id] = replace(p, state="sent", attempts=p.attempts + 1, last_error=None)

    async def mark_retry(self, id: int, attempts: int, next_at: float, error: str) -> None:
        self._rows[id] = replace(self._rows[id], attempts=attempts, next_at=next_at, last_error=error)

    async def mark_dead(self, id: int, attempts: int, now: datetime, error: str) -> None:
        self._rows[id] = replace(self._rows[id], state="dead", attempts=attempts, last_error=error)

    def thread(self, channel: str, incident: str) -> str | None:
        return self._threads.get((channel, incident))

    async def set_thread(self, channel: str, incident: str, ref: str) -> None:
        self._threads.setdefault((channel, incident), ref)

    def strand(self, channels: set[str], now: datetime, then: Callable[[int], None]) -> None:
        gone = [p for p in self._rows.values() if p.state == "pending" and p.channel not in channels]
        for p in gone:
            self._rows[p.id] = replace(p, state="dead", last_error="channel no longer configured")
        then(len(gone))
