"""The durable state (SPEC 4.3): a SQLite file at `watchdog.state_path`.

- `audit`: the append-only journal. Every event, action intent, action outcome
  and check result is one row, written in its own committed transaction before
  the call returns (WAL, synchronous=FULL: a row written before an action
  survives kill -9). Each row carries the hash of the previous one; its own hash
  is sha256(prev_hash + canonical JSON of the row), and `audit_head` keeps the
  newest (seq, hash), so an edited, deleted, reordered or truncated row shows up
  in `verify_chain()`. Triggers refuse UPDATE and DELETE on it.
- `incidents`: one row per incident, upserted with the machine's snapshot after
  every decision.
- `outbox`, `notify_threads`: notifications waiting, sent or dead-lettered, and
  each channel's thread per incident (watchdog/outbox.py).

One connection, used from the event loop thread only. The schema version is
`PRAGMA user_version`; `MIGRATIONS` brings an older file up to date on open and
a file from a newer version is refused.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from watchdog.codec import jsonable
from watchdog.escalation import Event
from watchdog.journal import Record

GENESIS = "0" * 64

# Each migration is a list of statements run in one transaction; its index + 1 is the version it produces.
MIGRATIONS: list[list[str]] = [
    [  # 1: the initial schema
        """CREATE TABLE audit (
            seq INTEGER PRIMARY KEY,
            at TEXT NOT NULL,
            kind TEXT NOT NULL,
            target TEXT NOT NULL,
            incident TEXT,
            level INTEGER NOT NULL,
            dry_run INTEGER NOT NULL,
            data TEXT NOT NULL,
            prev_hash TEXT NOT NULL,
            hash TEXT NOT NULL
        )""",
        "CREATE INDEX audit_by_incident ON audit (incident, seq)",
        """CREATE TABLE audit_head (
            id INTEGER PRIMARY KEY CHECK (id = 1),
            seq INTEGER NOT NULL,
            hash TEXT NOT NULL
        )""",
        """CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit
           BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END""",
        """CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit
           BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END""",
        """CREATE TABLE incidents (
            id TEXT PRIMARY KEY,
            target TEXT NOT NULL,
            opened_at TEXT NOT NULL,
            phase TEXT NOT NULL,
            level INTEGER NOT NULL,
            closed_at TEXT,
            updated_at TEXT NOT NULL,
            snapshot TEXT NOT NULL
        )""",
        "CREATE INDEX incidents_by_opened ON incidents (opened_at)",
    ],
    [  # 2: the notification outbox (watchdog/outbox.py)
        """CREATE TABLE outbox (
            id INTEGER PRIMARY KEY,
            channel TEXT NOT NULL,
            event_key TEXT NOT NULL,
            target TEXT NOT NULL,
            incident TEXT,
            kind TEXT NOT NULL,
            event TEXT NOT NULL,
            dry_run INTEGER NOT NULL,
            state TEXT NOT NULL,
            attempts INTEGER NOT NULL DEFAULT 0,
            created_at TEXT NOT NULL,
            next_at REAL NOT NULL,
            done_at TEXT,
            last_error TEXT,
            UNIQUE (channel, event_key)
        )""",
        "CREATE INDEX outbox_by_channel ON outbox (channel, state, id)",
        """CREATE TABLE notify_threads (
            channel TEXT NOT NULL,
            incident TEXT NOT NULL,
            ref TEXT NOT NULL,
            PRIMARY KEY (channel, incident)
        )""",
    ],
]
SCHEMA_VERSION = len(MIGRATIONS)


class StoreError(Exception):
    """The state file cannot be opened, migrated or written; the message is one line."""


def canonical(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def row_hash(prev_hash: str, row: dict[str, Any]) -> str:
    """`row`: seq, at, kind, target, incident, level, dry_run (bool), data (a dict)."""
    return hashlib.sha256((prev_hash + canonical(row)).encode()).hexdigest()


class SqliteStore:
    """A drop-in for `MemoryJournal` that keeps everything in a SQLite file."""

    def __init__(self, path: str | Path, *, create: bool = True):
        self.path = Path(path)
        self._last_saved: dict[str, str] = {}
        if create:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            except FileExistsError:
                raise StoreError(f"state_path {self.path}: {self.path.parent} exists and is not a directory") from None
            except OSError as exc:
                raise StoreError(f"state_path {self.path}: cannot create directory {self.path.parent}: "
                                 f"{exc.strerror or exc}") from None
        elif not self.path.is_file():
            raise StoreError(f"state_path {self.path}: no such state file (has the daemon run with this config?)")
        try:
            uri = self.path.absolute().as_uri() + ("?mode=rwc" if create else "?mode=rw")
            self._db = sqlite3.connect(uri, uri=True, isolation_level=None, timeout=10)
        except sqlite3.Error as exc:
            raise StoreError(f"state_path {self.path}: cannot open: {exc}") from None
        try:
            self._db.execute("PRAGMA busy_timeout = 10000")
            mode = self._db.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise StoreError(f"state_path {self.path}: the file system does not allow WAL mode (got {mode})")
            self._db.execute("PRAGMA synchronous = FULL")
            self._migrate(create)
        except sqlite3.Error as exc:
            self._db.close()
            raise StoreError(f"state_path {self.path}: cannot use it: {exc}") from None
        except StoreError:
            self._db.close()
            raise

    # --- schema -------------------------------------------------------------------

    @property
    def schema_version(self) -> int:
        return int(self._db.execute("PRAGMA user_version").fetchone()[0])

    def _migrate(self, create: bool) -> None:
        version = self.schema_version
        if version > SCHEMA_VERSION:
            raise StoreError(f"state_path {self.path}: schema version {version} is newer than this program's "
                             f"{SCHEMA_VERSION}; upgrade rollback-watchdog or use another state_path")
        if version == SCHEMA_VERSION:
            return
        if version == 0 and not create:
            raise StoreError(f"state_path {self.path}: not a rollback-watchdog state file (no schema)")
        if version == 0 and self._db.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]:
            raise StoreError(f"state_path {self.path}: a SQLite file with other tables, not a rollback-watchdog state file")
        self._db.execute("BEGIN IMMEDIATE")
        try:
            version = self.schema_version  # another process may have migrated meanwhile
            for number in range(version + 1, SCHEMA_VERSION + 1):
                for statement in MIGRATIONS[number - 1]:
                    self._db.execute(statement)
                self._db.execute(f"PRAGMA user_version = {number}")
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise

    def close(self) -> None:
        self._db.close()

    # --- the journal (the same calls as MemoryJournal) ------------------------------

    def event(self, ev: Event, dry_run: bool = False) -> Record:
        data: dict[str, Any] = {"event": ev.kind, "severity": ev.severity, "why": ev.why, "next": ev.next}
        if ev.details:
            data["details"] = jsonable(dict(ev.details))
        return self._append(ev.at, "event", ev.target, ev.incident, ev.level, dry_run, data)

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

    @property
    def connection(self) -> sqlite3.Connection:
        """For the outbox, which shares the file (and the event loop thread)."""
        return self._db

    def records(self, incident: str | None = None) -> list[Record]:
        cols = "seq, at, kind, target, incident, level, dry_run, data"
        if incident is None:
            rows = self._db.execute(f"SELECT {cols} FROM audit ORDER BY seq").fetchall()
        else:
            rows = self._db.execute(f"SELECT {cols} FROM audit WHERE incident = ? ORDER BY seq", (incident,)).fetchall()
        return [Record(seq, datetime.fromisoformat(at), kind, target, inc, level, json.loads(data), bool(dry))
                for seq, at, kind, target, inc, level, dry, data in rows]

    def events_after(self, seq: int) -> list[Record]:
        """The event records newer than `seq`, oldest first."""
        rows = self._db.execute("SELECT seq, at, kind, target, incident, level, dry_run, data FROM audit"
                                " WHERE seq > ? AND kind = 'event' ORDER BY seq", (seq,)).fetchall()
        return [Record(seq_, datetime.fromisoformat(at), kind, target, inc, level, json.loads(data), bool(dry))
                for seq_, at, kind, target, inc, level, dry, data in rows]

    def _append(self, at: datetime, kind: str, target: str, incident: str | None, level: int, dry_run: bool,
                data: dict[str, Any]) -> Record:
        data = jsonable(data)
        try:
            self._db.execute("BEGIN IMMEDIATE")  # the head is read and moved under the write lock
            try:
                head = self._db.execute("SELECT seq, hash FROM audit_head WHERE id = 1").fetchone()
                seq, prev = (head[0] + 1, head[1]) if head else (1, GENESIS)
                row = {"seq": seq, "at": at.isoformat(), "kind": kind, "target": target, "incident": incident,
                       "level": level, "dry_run": bool(dry_run), "data": data}
                digest = row_hash(prev, row)
                self._db.execute(
                    "INSERT INTO audit (seq, at, kind, target, incident, level, dry_run, data, prev_hash, hash)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (seq, row["at"], kind, target, incident, level, int(bool(dry_run)), canonical(data), prev, digest),
                )
                self._db.execute("INSERT OR REPLACE INTO audit_head (id, seq, hash) VALUES (1, ?, ?)", (seq, digest))
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            raise StoreError(f"state_path {self.path}: cannot write the audit log: {exc}") from None
        return Record(seq, at, kind, target, incident, level, data, bool(dry_run))

    def verify_chain(self) -> list[str]:
        """Problems found in the audit chain, one line each; empty when it is intact."""
        return self.check_chain()[1]

    def check_chain(self) -> tuple[int, list[str]]:
        """(records checked, problems): both from one read snapshot."""
        problems: list[str] = []
        self._db.execute("BEGIN")  # one snapshot: the head and the rows agree even while the daemon writes
        try:
            rows = self._db.execute(
                "SELECT seq, at, kind, target, incident, level, dry_run, data, prev_hash, hash FROM audit ORDER BY seq"
            ).fetchall()
            head = self._db.execute("SELECT seq, hash FROM audit_head WHERE id = 1").fetchone()
        finally:
            self._db.execute("COMMIT")
        prev_hash, prev_seq = GENESIS, 0
        for seq, at, kind, target, incident, level, dry_run, data, stored_prev, digest in rows:
            if seq != prev_seq + 1:
                problems.append(f"record {seq}: follows record {prev_seq} (records {prev_seq + 1}..{seq - 1} missing)")
            if stored_prev != prev_hash:
                problems.append(f"record {seq}: does not link to the record before it (deleted, inserted or reordered)")
            try:
                parsed = json.loads(data)
            except ValueError:
                problems.append(f"record {seq}: data is not valid JSON (edited)")
                parsed = data
            row = {"seq": seq, "at": at, "kind": kind, "target": target, "incident": incident,
                   "level": level, "dry_run": bool(dry_run), "data": parsed}
            if row_hash(stored_prev, row) != digest:
                problems.append(f"record {seq}: content does not match its hash (edited)")
            prev_hash, prev_seq = digest, seq
        if head is None:
            if rows:
                problems.append("the audit head is missing (edited)")
        elif (head[0], head[1]) != (prev_seq, prev_hash):
            problems.append(f"the newest record is {prev_seq} but the audit head says {head[0]} "
                            "(records removed from the end, or the head edited)")
        return len(rows), problems

    def audit_count(self) -> int:
        return int(self._db.execute("SELECT count(*) FROM audit").fetchone()[0])

    # --- incidents ----------------------------------------------------------------

    def save_incident(self, snap: dict[str, Any]) -> None:
        """Upsert by id. An unchanged snapshot is not written again."""
        text = canonical(snap)
        if self._last_saved.get(snap["id"]) == text:
            return
        now = datetime.now().astimezone().isoformat()
        try:
            self._db.execute(
                "INSERT INTO incidents (id, target, opened_at, phase, level, closed_at, updated_at, snapshot)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (id) DO UPDATE SET target = excluded.target, opened_at = excluded.opened_at,"
                " phase = excluded.phase, level = excluded.level, closed_at = excluded.closed_at,"
                " updated_at = excluded.updated_at, snapshot = excluded.snapshot",
                (snap["id"], snap["target"], snap["opened_at"], snap["phase"], snap.get("level", 0),
                 snap.get("closed_at"), now, text),
            )
        except sqlite3.Error as exc:
            raise StoreError(f"state_path {self.path}: cannot save incident {snap['id']}: {exc}") from None
        if len(self._last_saved) > 1000:
            self._last_saved.clear()
        self._last_saved[snap["id"]] = text

    _INCIDENT_COLS = "id, target, opened_at, phase, level, closed_at, updated_at, snapshot"

    def _incident_rows(self, where: str = "", args: Sequence[Any] = (), tail: str = "") -> list[dict[str, Any]]:
        sql = f"SELECT {self._INCIDENT_COLS} FROM incidents {where} {tail}"
        out = []
        for id_, target, opened, phase, level, closed, updated, snap in self._db.execute(sql, tuple(args)):
            out.append({"id": id_, "target": target, "opened_at": opened, "phase": phase, "level": level,
                        "closed_at": closed, "updated_at": updated, "snapshot": json.loads(snap)})
        return out

    def open_incidents(self) -> list[dict[str, Any]]:
        return self._incident_rows("WHERE closed_at IS NULL", tail="ORDER BY opened_at, id")

    def incident(self, incident_id: str) -> dict[str, Any] | None:
        rows = self._incident_rows("WHERE id = ?", (incident_id,))
        return rows[0] if rows else None

    def list_incidents(self, limit: int = 50) -> list[dict[str, Any]]:
        return self._incident_rows(tail="ORDER BY opened_at DESC, id DESC LIMIT ?", args=(limit,))
