"""The durable state (SPEC 4.3): a SQLite file at `watchdog.state_path`.

- `audit`: the append-only journal. Every event, action intent, action outcome
  and check result is one row, committed in order (WAL, synchronous=FULL: a row
  that has landed survives kill -9; rows queued together share one transaction,
  all or none: watchdog/state/writer.py). Each row carries
  the hash of the previous one; its own hash is sha256(prev_hash + canonical
  JSON of the row), and `audit_head` keeps the newest (seq, hash), so an
  edited, deleted, reordered or truncated row shows up in `verify_chain()`.
  Triggers refuse UPDATE and DELETE on it.
- `incidents`: one row per incident, upserted with the machine's incident
  (watchdog/state/codec.py) after every decision.
- `pauses`: the operator's pauses with their expiry, so a restart keeps them.
- `outbox`, `notify_threads`, `outbox_mark`: notifications waiting, sent or
  dead-lettered, each channel's thread per incident (watchdog/state/outbox.py).
- `alarm_states`: the newest state change of each alarm a `cloudwatch_alarms` source took from its
  queue (watchdog/sources/alarm_queue.py): a message is deleted only once its row has landed.

Two ways to write. Without a writer (the CLI, tests, start-up) each write runs
at once and raises StoreError when it fails. The daemon `attach`es a
`StateWriter`: then writes are queued to its thread, in order, each retried
until it lands, and the event loop never waits on the file (`flush()` waits for
what was written so far). Reads use their own connection on the caller's
thread: under WAL they see every landed write and never wait for a writer.

Opening, creating and migrating the file: watchdog/state/sqlite/file.py; the hash
chain: watchdog/state/auditchain.py.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Collection, Sequence
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, TypeVar

from watchdog.state.auditchain import GENESIS, canonical, chain_hash, chain_problems
from watchdog.state.codec import decode_pause, encode_pause, jsonable
from watchdog.state.journal import JournalRows, Record
from watchdog.core.pause import Pause
from watchdog.state.sqlite.file import open_reader, open_readonly, open_writable, rollback
from watchdog.state.writer import StateWriter
from watchdog.state.storage import StateConflict, StoreError

T = TypeVar("T")


class SqliteStore(JournalRows):
    """The journal, incidents, pauses and (through watchdog.state.outbox) the notification outbox, in one file."""

    def __init__(self, path: str | Path, *, create: bool = True, readonly: bool = False):
        self.path = Path(path)
        self._last_saved: dict[str, str] = {}
        self._writer: StateWriter | None = None
        self._db: sqlite3.Connection | None = None
        if readonly:
            self._rdb = open_readonly(self.path)
        else:
            self._db = open_writable(self.path, create)
            self._rdb = open_reader(self.path)
        self._seq = self._head_seq()
        self._joiner = self._joined  # one object: the writer joins the writes that name the same one

    # --- schema -------------------------------------------------------------------

    @property
    def where(self) -> str:
        """What a reader's lines name the state by (watchdog.state.storage.StateReader)."""
        return str(self.path)

    @property
    def schema_version(self) -> int:
        return int(self._rdb.execute("PRAGMA user_version").fetchone()[0])

    def close(self) -> None:
        # The writing connection last: the last one to close checkpoints the WAL into the file and removes
        # it, which a read-only connection cannot do (a state file on a read-only mount needs no WAL beside it).
        for db in (self._rdb, self._db):
            if db is not None:
                db.close()

    # --- writing --------------------------------------------------------------------

    def attach(self, writer: StateWriter) -> None:
        """From now on writes are queued to `writer` (the daemon); nothing here writes on the caller's thread."""
        self._writer = writer

    def _transaction(self, what: str, fn: Callable[[sqlite3.Connection], T]) -> _Write:
        """`fn` as a write: run alone (called: its own transaction), or joined with those queued after it."""
        if self._db is None:
            raise StoreError(f"state_path {self.path}: opened read-only")
        return _Write(what, fn, self._joiner)

    def _joined(self, writes: Sequence[_Write]) -> list[tuple[Any, Exception | None]]:
        """Writes in one transaction, in order: one alone, or several queued together (the writer's group
        commit), each then in a savepoint, so that a bug in one undoes it alone and the others land. A SQLite
        error undoes them all (StoreError: the writer tries the whole group again)."""
        db, what = self._db, writes[0].what
        if db is None:
            raise StoreError(f"state_path {self.path}: opened read-only")
        out: list[tuple[Any, Exception | None]] = []
        try:
            db.execute("BEGIN IMMEDIATE")
            if len(writes) == 1:
                out.append((writes[0].body(db), None))  # a bug raises, and the transaction is rolled back
            for w in writes if len(writes) > 1 else ():
                what = w.what
                db.execute("SAVEPOINT part")
                try:
                    out.append((w.body(db), None))
                except (sqlite3.Error, StateConflict):
                    raise
                except Exception as exc:  # a bug in this write alone
                    db.execute("ROLLBACK TO part")
                    out.append((None, exc))
                db.execute("RELEASE part")
            db.execute("COMMIT")
            return out
        except sqlite3.Error as exc:
            rollback(db)
            raise StoreError(f"state_path {self.path}: cannot {what}: {exc}") from None
        except BaseException:
            rollback(db)
            raise

    def write(self, what: str, fn: Callable[[sqlite3.Connection], T], then: Callable[[T], None] | None = None) -> None:
        """Run `fn` in one transaction on the writing connection: at once (raising StoreError), or queued to
        the attached writer. `then(result)` follows once it has landed (on the event loop when queued)."""
        run = self._transaction(what, fn)
        if self._writer is not None:
            self._writer.submit(run, then)
            return
        result = run()
        if then is not None:
            then(result)

    async def landed(self, what: str, fn: Callable[[sqlite3.Connection], T]) -> T:
        """`write`, returning once it has landed (as long as that takes while the file cannot be written)."""
        run = self._transaction(what, fn)
        if self._writer is None:
            return run()
        return await self._writer.landed(self._writer.submit(run))

    async def flush(self) -> None:
        """Wait until every write made so far has landed (at once without a writer)."""
        if self._writer is not None:
            await self._writer.flush()

    @property
    def reader(self) -> sqlite3.Connection:
        """For the outbox's reads, on the caller's thread."""
        return self._rdb

    # --- the journal (its records' shapes: journal.py JournalRows) ------------------------------

    def _head_seq(self) -> int:
        head = self._rdb.execute("SELECT seq FROM audit_head WHERE id = 1").fetchone()
        return int(head[0]) if head else 0

    def _append(self, at: datetime, kind: str, target: str, incident: str | None, level: int, dry_run: bool,
                data: dict[str, Any]) -> Record:
        # The sequence number is known now (this process is the only writer: watchdog.state.sqlite.lock), so the record
        # can be returned before it lands; the hash chain is computed when it does, in order.
        seq = self._seq + 1
        data = jsonable(data)
        row = {"seq": seq, "at": at.isoformat(), "kind": kind, "target": target, "incident": incident,
               "level": level, "dry_run": bool(dry_run), "data": data}
        # Everything that could fail on the writer thread other than SQLite itself is done here, now: a
        # write that failed there for any other reason would leave its number unused and the chain broken.
        row_text, data_text = canonical(row), canonical(data)
        values = (seq, row["at"], kind, target, incident, level, int(bool(dry_run)), data_text)

        def insert(db: sqlite3.Connection) -> None:
            head = db.execute("SELECT seq, hash FROM audit_head WHERE id = 1").fetchone()
            last, top = (head[0], head[1]) if head else (0, GENESIS)
            if last >= seq and _landed(db, seq, row_text):
                return  # a commit reported as failed (an I/O error after it) that did land: not twice
            if last != seq - 1:
                raise StateConflict(f"state_path {self.path}: the audit log's head is at record {last}, not "
                                    f"{seq - 1}: the file was changed by another process; restart the watchdog")
            digest = chain_hash(top, row_text)
            db.execute("INSERT INTO audit (seq, at, kind, target, incident, level, dry_run, data, prev_hash, hash)"
                       " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", (*values, top, digest))
            db.execute("INSERT OR REPLACE INTO audit_head (id, seq, hash) VALUES (1, ?, ?)", (seq, digest))

        self.write("write the audit log", insert)
        self._seq = seq  # not reached when an unqueued write failed: the number is used again
        return Record(seq, at, kind, target, incident, level, data, bool(dry_run))

    def _records(self, where: str, args: tuple[Any, ...]) -> list[Record]:
        rows = self._rdb.execute(f"SELECT seq, at, kind, target, incident, level, dry_run, data FROM audit {where}"
                                 " ORDER BY seq", args).fetchall()
        return [Record(seq, datetime.fromisoformat(at), kind, target, inc, level, json.loads(data), bool(dry))
                for seq, at, kind, target, inc, level, dry, data in rows]

    def records(self, incident: str | None = None) -> list[Record]:
        if incident is None:
            return self._records("", ())
        return self._records("WHERE incident = ?", (incident,))

    def events_after(self, seq: int) -> list[Record]:
        """The event records newer than `seq`, oldest first."""
        return self._records("WHERE seq > ? AND kind = 'event'", (seq,))

    def verify_chain(self) -> list[str]:
        """Problems found in the audit chain, one line each; empty when it is intact."""
        return self.check_chain()[1]

    def check_chain(self) -> tuple[int, list[str]]:
        """(records checked, problems): both from one read snapshot."""
        db = self._rdb
        db.execute("BEGIN")  # one snapshot: the head and the rows agree even while the daemon writes
        try:
            rows = db.execute(
                "SELECT seq, at, kind, target, incident, level, dry_run, data, prev_hash, hash FROM audit ORDER BY seq"
            ).fetchall()
            head = db.execute("SELECT seq, hash FROM audit_head WHERE id = 1").fetchone()
        finally:
            db.execute("COMMIT")
        return len(rows), chain_problems(rows, head)

    def audit_count(self) -> int:
        return int(self._rdb.execute("SELECT count(*) FROM audit").fetchone()[0])

    # --- incidents ----------------------------------------------------------------

    def save_incident(self, snap: dict[str, Any]) -> None:
        """Upsert by id (`snap` from codec.encode_incident). An unchanged snapshot is not written again."""
        text = canonical(snap)
        if self._last_saved.get(snap["id"]) == text:
            return
        now = datetime.now().astimezone().isoformat()
        args = (snap["id"], snap["target"], snap["opened_at"], snap["phase"], snap.get("level", 0),
                snap.get("closed_at"), now, text)

        def upsert(db: sqlite3.Connection) -> None:
            db.execute(
                "INSERT INTO incidents (id, target, opened_at, phase, level, closed_at, updated_at, snapshot)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (id) DO UPDATE SET target = excluded.target, opened_at = excluded.opened_at,"
                " phase = excluded.phase, level = excluded.level, closed_at = excluded.closed_at,"
                " updated_at = excluded.updated_at, snapshot = excluded.snapshot", args)

        self.write(f"save incident {snap['id']}", upsert)
        if len(self._last_saved) > 1000:
            self._last_saved.clear()
        self._last_saved[snap["id"]] = text

    _INCIDENT_COLS = "id, target, opened_at, phase, level, closed_at, updated_at, snapshot"

    def _incident_rows(self, where: str = "", args: Sequence[Any] = (), tail: str = "") -> list[dict[str, Any]]:
        sql = f"SELECT {self._INCIDENT_COLS} FROM incidents {where} {tail}"
        out = []
        for id_, target, opened, phase, level, closed, updated, snap in self._rdb.execute(sql, tuple(args)):
            out.append({"id": id_, "target": target, "opened_at": opened, "phase": phase, "level": level,
                        "closed_at": closed, "updated_at": updated, "snapshot": _snapshot(snap)})
        return out

    def open_incidents(self) -> list[dict[str, Any]]:
        return self._incident_rows("WHERE closed_at IS NULL", tail="ORDER BY opened_at, id")

    def incident(self, incident_id: str) -> dict[str, Any] | None:
        rows = self._incident_rows("WHERE id = ?", (incident_id,))
        return rows[0] if rows else None

    def list_incidents(self, limit: int = 50) -> list[dict[str, Any]]:
        return self._incident_rows(tail="ORDER BY opened_at DESC, id DESC LIMIT ?", args=(limit,))

    # --- pauses ---------------------------------------------------------------------

    def save_pause(self, pause: Pause) -> None:
        text = canonical(encode_pause(pause))
        self.write(f"save the pause of {pause.scope}", lambda db: db.execute(
            "INSERT OR REPLACE INTO pauses (scope, pause) VALUES (?, ?)", (pause.scope, text)))

    def delete_pause(self, scope: str) -> None:
        self.write(f"end the pause of {scope}", lambda db: db.execute("DELETE FROM pauses WHERE scope = ?", (scope,)))

    def pauses(self) -> tuple[list[Pause], list[tuple[str, str]]]:
        """Every stored pause, expired ones too (the caller says which ended while it was down), and the
        (scope, why) of those that cannot be read back (one damaged row must not stop the start)."""
        out, bad = [], []
        for scope, text in self._rdb.execute("SELECT scope, pause FROM pauses ORDER BY scope"):
            try:
                out.append(decode_pause(json.loads(text)))
            except ValueError as exc:  # ValidationError is a ValueError
                bad.append((str(scope), f"the stored pause cannot be read: {type(exc).__name__}"))
        return out, bad

    # --- the alarm ledger (watchdog/sources/alarm_queue.py) ----------------------------------------

    durable = True

    def record_alarm(self, source: str, alarm: str, state: str, at: datetime, reason_data: str) -> None:
        args = (source, alarm, state, _micros(at), reason_data)
        self.write(f"record the state of alarm {alarm}", lambda db: db.execute(
            "INSERT INTO alarm_states (source, alarm, state, at, reason_data) VALUES (?, ?, ?, ?, ?)"
            " ON CONFLICT (source, alarm) DO UPDATE SET state = excluded.state, at = excluded.at,"
            " reason_data = excluded.reason_data WHERE excluded.at > alarm_states.at", args))

    def alarm_records(self, source: str) -> list[tuple[str, str, datetime, str]]:
        rows = self._rdb.execute("SELECT alarm, state, at, reason_data FROM alarm_states WHERE source = ?"
                                 " ORDER BY alarm", (source,))
        return [(alarm, state, _EPOCH + timedelta(microseconds=at), data) for alarm, state, at, data in rows]

    def forget_alarms(self, source: str, alarms: Collection[str]) -> None:
        rows = [(source, alarm) for alarm in alarms]
        self.write(f"forget {len(rows)} alarms of source {source}", lambda db: db.executemany(
            "DELETE FROM alarm_states WHERE source = ? AND alarm = ?", rows))


_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def _micros(at: datetime) -> int:
    """Kept as microseconds since the epoch: compared as numbers, whatever zone a time came in."""
    return (at - _EPOCH) // timedelta(microseconds=1)




def _landed(db: sqlite3.Connection, seq: int, row_text: str) -> bool:
    """Whether record `seq` in the file is this very record (its hash over the one before it matches): a
    group of writes whose commit was reported failed may have landed with records after it."""
    stored = db.execute("SELECT prev_hash, hash FROM audit WHERE seq = ?", (seq,)).fetchone()
    return stored is not None and stored[1] == chain_hash(stored[0], row_text)


class _Write:
    """A queued write: run alone (called: its own transaction) or joined with the writes queued after it
    (`joiner`, the store's group commit)."""

    __slots__ = ("what", "body", "joiner")

    def __init__(self, what: str, body: Callable[[sqlite3.Connection], Any],
                 joiner: Callable[[Sequence[Any]], list[tuple[Any, Exception | None]]]):
        self.what, self.body, self.joiner = what, body, joiner

    def __call__(self) -> Any:
        (result, _), = self.joiner([self])
        return result


def _snapshot(text: str) -> Any:
    """The stored snapshot; a damaged one (not JSON) as its text, which decode_incident refuses like any other
    unreadable incident (recovery pages it and starts), instead of one row stopping every reader."""
    try:
        return json.loads(text)
    except ValueError:
        return text
