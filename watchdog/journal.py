"""The record of what the watchdog decided and did.

`Journal` is what the executor writes to: every event, action intent and
outcome, and check result, in order. The executor writes the intent before an
action starts and the outcome after it ends. `MemoryJournal` keeps them in
memory (tests, `run --once`); `watchdog.store.SqliteStore` is the durable one
the daemon uses.
"""

from __future__ import annotations

import itertools
from collections import deque
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any, Protocol, runtime_checkable

from watchdog.escalation import Event


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


@runtime_checkable
class Journal(Protocol):
    def event(self, ev: Event, dry_run: bool = False) -> Record: ...

    def intent(self, at: datetime, target: str, incident: str, level: int, action: str, attempt: int,
               dry_run: bool) -> Record: ...

    def outcome(self, at: datetime, target: str, incident: str, level: int, action: str, attempt: int,
                outcome: str, detail: str, dry_run: bool) -> Record: ...

    def check(self, at: datetime, target: str, incident: str, level: int, check: str, ok: bool,
              detail: str) -> Record: ...

    def notification(self, at: datetime, target: str, incident: str | None, level: int, channel: str, event: str,
                     delivery: int, outcome: str, attempts: int, detail: str, dry_run: bool) -> Record: ...

    def records(self, incident: str | None = None) -> list[Record]: ...

    async def flush(self) -> None:
        """Return once everything recorded so far is durable."""


class MemoryJournal:
    def __init__(self, keep: int = 10_000):
        self._records: deque[Record] = deque(maxlen=keep)
        self._seq = itertools.count(1)

    def _add(self, at: datetime, kind: str, target: str, incident: str | None, level: int, dry_run: bool, **data: Any) -> Record:
        rec = Record(next(self._seq), at, kind, target, incident, level, data, dry_run)
        self._records.append(rec)
        return rec

    def event(self, ev: Event, dry_run: bool = False) -> Record:
        return self._add(ev.at, "event", ev.target, ev.incident, ev.level, dry_run, event=ev.kind,
                         severity=ev.severity, why=ev.why, next=ev.next)

    def intent(self, at: datetime, target: str, incident: str, level: int, action: str, attempt: int, dry_run: bool) -> Record:
        return self._add(at, "intent", target, incident, level, dry_run, action=action, attempt=attempt)

    def outcome(self, at: datetime, target: str, incident: str, level: int, action: str, attempt: int,
                outcome: str, detail: str, dry_run: bool) -> Record:
        return self._add(at, "outcome", target, incident, level, dry_run, action=action, attempt=attempt,
                         outcome=outcome, detail=detail)

    def check(self, at: datetime, target: str, incident: str, level: int, check: str, ok: bool, detail: str) -> Record:
        return self._add(at, "check", target, incident, level, False, check=check, ok=ok, detail=detail)

    def notification(self, at: datetime, target: str, incident: str | None, level: int, channel: str, event: str,
                     delivery: int, outcome: str, attempts: int, detail: str, dry_run: bool) -> Record:
        return self._add(at, "notification", target, incident, level, dry_run, channel=channel, event=event,
                         delivery=delivery, outcome=outcome, attempts=attempts, detail=detail)

    def records(self, incident: str | None = None) -> list[Record]:
        return [r for r in self._records if incident is None or r.incident == incident]

    async def flush(self) -> None:
        return None
