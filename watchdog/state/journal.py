"""The record of what the watchdog decided and did, and the store that keeps it in memory.

The capabilities a store has (the audit journal, incidents, pauses) are the
Protocols in watchdog/state/storage.py. `MemoryStore` has them all in memory (tests,
`run --once`, the replay: watchdog/state/memory.py); `watchdog.state.sqlite.store.SqliteStore`
is the SQLite backend's (watchdog/state/sqlite/backend.py), the one the daemon uses today.
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Collection
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from watchdog.state.codec import jsonable
from watchdog.shared.events import Event
from watchdog.core.pause import Pause


@dataclass(frozen=True)
class Record:
    seq: int
    at: datetime
    kind: str  # event | intent | outcome | check | notification
    target: str
    incident: str | None
    level: int
    data: dict[str, Any] = field(default_factory=dict)
    dry_run: bool = False

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["at"] = self.at.isoformat()
        return d


class JournalRows:
    """What each kind of audit record holds, one way for every store: a store gives `_append`, which numbers,
    keeps and returns the record (MemoryStore, the SQLite file's, the shared table's)."""

    def _append(self, at: datetime, kind: str, target: str, incident: str | None, level: int, dry_run: bool,
                data: dict[str, Any]) -> Record:
        raise NotImplementedError

    def event(self, ev: Event, dry_run: bool = False) -> Record:
        return self._append(ev.at, "event", ev.target, ev.incident, ev.level, dry_run, event_data(ev))

    def intent(self, at: datetime, target: str, incident: str, level: int, action: str, attempt: int, dry_run: bool) -> Record:
        return self._append(at, "intent", target, incident, level, dry_run, {"action": action, "attempt": attempt})

    def outcome(self, at: datetime, target: str, incident: str, level: int, action: str, attempt: int,
                outcome: str, detail: str, dry_run: bool) -> Record:
        return self._append(at, "outcome", target, incident, level, dry_run,
                            {"action": action, "attempt": attempt, "outcome": outcome, "detail": detail})

    def check(self, at: datetime, target: str, incident: str, level: int, check: str, ok: bool, detail: str) -> Record:
        return self._append(at, "check", target, incident, level, False, {"check": check, "ok": ok, "detail": detail})

    def notification(self, at: datetime, target: str, incident: str | None, level: int, channel: str, event: str,
                     delivery: int, outcome: str, attempts: int, detail: str, dry_run: bool) -> Record:
        return self._append(at, "notification", target, incident, level, dry_run,
                            {"channel": channel, "event": event, "delivery": delivery, "outcome": outcome,
                             "attempts": attempts, "detail": detail})


class IncidentRows:
    """The incident reads of a store that holds its rows in a dict by id (in memory, or a table's mirror)."""

    _incidents: dict[str, dict[str, Any]]

    def open_incidents(self) -> list[dict[str, Any]]:
        rows = [r for r in self._incidents.values() if r["closed_at"] is None]
        return sorted(rows, key=lambda r: (r["opened_at"], r["id"]))

    def incident(self, incident_id: str) -> dict[str, Any] | None:
        return self._incidents.get(incident_id)

    def list_incidents(self, limit: int = 50) -> list[dict[str, Any]]:
        rows = sorted(self._incidents.values(), key=lambda r: (r["opened_at"], r["id"]), reverse=True)
        return rows[:limit]


class MemoryStore(JournalRows, IncidentRows):
    """Every store capability (watchdog.state.storage.Store) in memory: `run --once` and tests. It keeps what the
    SQLite store keeps, converted the same way (tests/test_store_contract.py holds both to that)."""

    def __init__(self, keep: int = 10_000):
        self._records: deque[Record] = deque(maxlen=keep)
        self._seq = itertools.count(1)
        self._incidents: dict[str, dict[str, Any]] = {}
        self._pauses: dict[str, Pause] = {}
        self._alarms: dict[tuple[str, str], tuple[str, datetime, str]] = {}

    def _append(self, at: datetime, kind: str, target: str, incident: str | None, level: int, dry_run: bool,
             data: dict[str, Any]) -> Record:
        rec = Record(next(self._seq), at, kind, target, incident, level, jsonable(data), bool(dry_run))
        self._records.append(rec)
        return rec

    def records(self, incident: str | None = None) -> list[Record]:
        return [r for r in self._records if incident is None or r.incident == incident]

    async def flush(self) -> None:
        return None

    # --- incidents and pauses ---------------------------------------------------------------

    def save_incident(self, snap: dict[str, Any]) -> None:
        self._incidents[snap["id"]] = {
            "id": snap["id"], "target": snap["target"], "opened_at": snap["opened_at"], "phase": snap["phase"],
            "level": snap.get("level", 0), "closed_at": snap.get("closed_at"), "snapshot": jsonable(snap)}

    def save_pause(self, pause: Pause) -> None:
        self._pauses[pause.scope] = pause

    def delete_pause(self, scope: str) -> None:
        self._pauses.pop(scope, None)

    def pauses(self) -> tuple[list[Pause], list[tuple[str, str]]]:
        return [self._pauses[s] for s in sorted(self._pauses)], []

    # --- the alarm ledger: gone with the process, so no queue is consumed into it ------------------

    durable = False

    def record_alarm(self, source: str, alarm: str, state: str, at: datetime, reason_data: str) -> None:
        kept = self._alarms.get((source, alarm))
        if kept is None or at > kept[1]:
            self._alarms[source, alarm] = (state, at, reason_data)

    def alarm_records(self, source: str) -> list[tuple[str, str, datetime, str]]:
        return [(a, *self._alarms[s, a]) for s, a in sorted(self._alarms) if s == source]

    def forget_alarms(self, source: str, alarms: Collection[str]) -> None:
        for alarm in alarms:
            self._alarms.pop((source, alarm), None)




def event_data(ev: Event) -> dict[str, Any]:
    """What an event's audit record holds, whichever store keeps it."""
    data: dict[str, Any] = {"event": ev.kind, "severity": ev.severity, "why": ev.why, "next": ev.next}
    if ev.details:
        data["details"] = dict(ev.details)
    return data
