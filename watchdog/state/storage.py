"""What every state backend offers, whatever keeps the file or table: one Protocol per capability.

The executor, recovery and the runtime use these and nothing else of a backend, so the in-memory store,
the SQLite file and the shared table of several watchdogs are interchangeable; each passes the one
contract test (tests/test_store_contract.py). The notification outbox is watchdog/state/outbox.py's `Outbox`;
how a backend is chosen, opened and closed: watchdog/state/backend.py.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from watchdog.shared.events import Event
from watchdog.state.journal import Record
from watchdog.core.pause import Pause


class StoreError(Exception):
    """The state cannot be opened, migrated, read or written; the message is one line and names the cause
    (a full disk is reported as a full disk)."""


class StateConflict(StoreError):
    """The state file is not what this process wrote (its audit head moved under it): retrying cannot help,
    only a restart that reads the file again can."""


class LockHeld(Exception):
    """Another process holds the state (the SQLite file's lock): the message names the holder."""


@dataclass(frozen=True)
class WriteFailure:
    """The state cannot be written: since when, why, after how many tries."""

    since: datetime
    error: str
    attempts: int
    fatal: bool = False  # retrying cannot help (StateConflict): nothing more is written


def make_parent(state_path: Path, directory: Path) -> None:
    """The directory the state (or its lock) lives in; StoreError in one line when it cannot be made."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise StoreError(f"state_path {state_path}: {directory} exists and is not a directory") from None
    except OSError as exc:
        raise StoreError(f"state_path {state_path}: cannot create directory {directory}: "
                         f"{exc.strerror or exc}") from None


@runtime_checkable
class AuditJournal(Protocol):
    """Every event, action intent and outcome, check and notification result, in order. A write returns its
    record at once; `flush` returns once everything written so far is durable (no action runs before)."""

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

    async def flush(self) -> None: ...


@runtime_checkable
class IncidentStore(Protocol):
    """Incidents as codec.encode_incident makes them, one row each, upserted by id."""

    def save_incident(self, snap: dict[str, Any]) -> None: ...

    def open_incidents(self) -> list[dict[str, Any]]: ...

    def incident(self, incident_id: str) -> dict[str, Any] | None: ...

    def list_incidents(self, limit: int = 50) -> list[dict[str, Any]]: ...


@runtime_checkable
class PauseStore(Protocol):
    def save_pause(self, pause: Pause) -> None: ...

    def delete_pause(self, scope: str) -> None: ...

    def pauses(self) -> tuple[list[Pause], list[tuple[str, str]]]:
        """Every stored pause, and the (scope, why) of those that cannot be read back."""
        ...


@runtime_checkable
class AlarmLedger(Protocol):
    """The newest state change of each CloudWatch alarm a `cloudwatch_alarms` source heard of through its queue
    (watchdog/sources/alarm_queue.py), kept so that a message is deleted only once what it said is durable.
    One row per source and alarm; a change replaces it only when newer (a late or repeated one changes nothing)."""

    # False: kept in memory only (`run --once`, the replay): a source must not consume its queue into it.
    durable: bool

    def record_alarm(self, source: str, alarm: str, state: str, at: datetime, reason_data: str) -> None: ...

    def alarm_records(self, source: str) -> list[tuple[str, str, datetime, str]]:
        """(alarm, state, at, reason_data) of every alarm kept for `source`."""
        ...

    def forget_alarms(self, source: str, alarms: Collection[str]) -> None:
        """Drop these alarms of `source` (CloudWatch has them no more, or no rule names them now)."""
        ...

    async def flush(self) -> None: ...


@runtime_checkable
class Store(AuditJournal, IncidentStore, PauseStore, AlarmLedger, Protocol):
    """A whole backend."""


class StateHealth(Protocol):
    """Whether the state takes writes: what /healthz, the systemd ping and the state gauge read."""

    @property
    def failure(self) -> WriteFailure | None: ...  # None while writes land

    @property
    def pending(self) -> int: ...  # writes made and not landed yet


class StateListener(Protocol):
    """Told on the event loop when writing starts failing, when its error changes, and when writes land
    again (watchdog/runtime/statewatch.py)."""

    def changed(self, failure: WriteFailure | None) -> None: ...


class StateReader(Protocol):
    """The state opened read-only, for the `incidents` commands (never created, never written)."""

    @property
    def where(self) -> str: ...  # what their lines name it by (the SQLite file's path)

    def incident(self, incident_id: str) -> dict[str, Any] | None: ...

    def list_incidents(self, limit: int = 50) -> list[dict[str, Any]]: ...

    def records(self, incident: str | None = None) -> list[Record]: ...

    def check_chain(self) -> tuple[int, list[str]]: ...  # (records checked, problems of the audit chain)

    def close(self) -> None: ...
