"""Opening the state file: made complete or not at all, migrated, refused in one line when it is wrong.

A new file is made under a temporary name and renamed into place once its schema is in, so an empty file
at `state_path` can only mean lost history: it is refused. The schema version is `PRAGMA user_version`;
`MIGRATIONS` brings an older file up to date on open, and a file from a newer version is refused.
Read-only opening (the CLI's reading commands) also works on a read-only mount.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path
from typing import Any

from watchdog.state.storage import StoreError, make_parent

WRITE_BUSY_MS = 5000  # how long one write waits for another process's lock before it counts as failing
READ_BUSY_MS = 1000

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
    [  # 2: the notification outbox (watchdog/state/outbox.py)
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
    [  # 3: pauses survive a restart; the outbox's mark of the audit events it has taken
        """CREATE TABLE pauses (
            scope TEXT PRIMARY KEY,
            pause TEXT NOT NULL
        )""",
        # The newest audit event the notifier has handled. Kept apart from the outbox rows, which are pruned:
        # derived from them, a week-old dead letter became the mark and everything after it was sent again.
        """CREATE TABLE outbox_mark (
            id INTEGER PRIMARY KEY CHECK (id = 1),
            audit_seq INTEGER NOT NULL
        )""",
        # An upgraded file: what is in the audit log now counts as handled (never re-sent); a new one starts
        # at 0, so its very first event, if a kill cut it off from the outbox, is queued at the next start.
        "INSERT INTO outbox_mark (id, audit_seq) VALUES (1, coalesce((SELECT seq FROM audit_head WHERE id = 1), 0))",
    ],
    [  # 4: the newest state change of each alarm a cloudwatch_alarms source took from its queue
        """CREATE TABLE alarm_states (
            source TEXT NOT NULL,
            alarm TEXT NOT NULL,
            state TEXT NOT NULL,
            at INTEGER NOT NULL,
            reason_data TEXT NOT NULL,
            PRIMARY KEY (source, alarm)
        )""",
    ],
]
SCHEMA_VERSION = len(MIGRATIONS)


def connect(uri: str, busy_ms: int, **kw: Any) -> sqlite3.Connection:
    db = sqlite3.connect(uri, uri=True, isolation_level=None, timeout=busy_ms / 1000, **kw)
    db.execute(f"PRAGMA busy_timeout = {busy_ms}")
    return db


def rollback(db: sqlite3.Connection) -> None:
    """After a failed statement. SQLite may have rolled back already (a full disk does): then ROLLBACK
    itself fails with "no transaction is active", which must not hide the error that caused it."""
    if db.in_transaction:
        try:
            db.execute("ROLLBACK")
        except sqlite3.Error:
            pass


def _fail(path: Path, what: str, exc: BaseException | str) -> StoreError:
    return StoreError(f"state_path {path}: {what}: {exc}")


def exists(path: Path) -> bool:
    """True when a state file is there. A zero-length one is refused: it was a state file once."""
    try:
        size = path.stat().st_size
    except (FileNotFoundError, NotADirectoryError):
        return False
    except OSError as exc:
        raise _fail(path, "cannot read", exc.strerror or exc) from None
    if path.is_dir():
        raise StoreError(f"state_path {path}: is a directory; name a file in it")
    if size == 0:
        raise StoreError(f"state_path {path}: the file is empty (0 bytes), so its history is gone; "
                         "move it away to start with a new state file")
    return True


def _missing(path: Path) -> StoreError:
    return StoreError(f"state_path {path}: no such state file (has the daemon run with this config?)")


def open_writable(path: Path, create: bool) -> sqlite3.Connection:
    """The writing connection (usable from the writer thread), the file made or migrated first."""
    there = exists(path)
    if not there and not create:
        raise _missing(path)
    if not there:
        _create(path)
    try:
        db = connect(path.absolute().as_uri() + "?mode=rw", WRITE_BUSY_MS, check_same_thread=False)
    except sqlite3.Error as exc:
        raise _fail(path, "cannot open", exc) from None
    try:
        _prepare(path, db)
        _migrate(path, db, create)
    except sqlite3.Error as exc:
        db.close()
        raise _fail(path, "cannot use it", exc) from None
    except StoreError:
        db.close()
        raise
    return db


def _create(path: Path) -> None:
    # Where a symlink points, not over it: the lock (watchdog.state.sqlite.lock) is named after the real path too.
    target = path.resolve()
    make_parent(path, target.parent)
    for left in (Path(f"{target}-wal"), Path(f"{target}-shm")):
        if left.exists():
            # SQLite would adopt it: the "new" file would come up with the old one's last records in it.
            raise StoreError(f"state_path {path}: {left} is left from a state file that is no longer there; "
                             "move it away with the file it belonged to")
    tmp = target.with_name(f".{target.name}.new-{os.getpid()}")
    try:
        db = connect(tmp.absolute().as_uri() + "?mode=rwc", WRITE_BUSY_MS)
        try:
            _prepare(path, db)
            _migrate(path, db, True)
        finally:
            db.close()  # checkpoints the WAL into the file: the renamed file is complete on its own
        os.replace(tmp, target)
    except (sqlite3.Error, OSError) as exc:
        for leftover in (tmp, Path(f"{tmp}-wal"), Path(f"{tmp}-shm")):
            leftover.unlink(missing_ok=True)
        raise _fail(path, "cannot create it", getattr(exc, "strerror", None) or exc) from None


def _prepare(path: Path, db: sqlite3.Connection) -> None:
    mode = db.execute("PRAGMA journal_mode = WAL").fetchone()[0]
    if str(mode).lower() != "wal":
        raise StoreError(f"state_path {path}: the file system does not allow WAL mode (got {mode})")
    db.execute("PRAGMA synchronous = FULL")


def open_reader(path: Path) -> sqlite3.Connection:
    """A reading connection beside the writing one: under WAL it never waits for a writer."""
    return connect(path.absolute().as_uri() + "?mode=ro", READ_BUSY_MS)


def open_readonly(path: Path) -> sqlite3.Connection:
    """For the CLI's reading commands, also on a read-only mount."""
    if not exists(path):
        raise _missing(path)
    try:
        db = open_reader(path)
        version = int(db.execute("PRAGMA user_version").fetchone()[0])
    except sqlite3.Error as exc:
        # WAL needs the -shm file; on a read-only mount it cannot be made. With no WAL or index left beside
        # the file (a clean shutdown removes both; a running daemon keeps both) the file alone is the whole
        # state and nothing writes it: it is read as immutable.
        if Path(f"{path}-wal").exists() or Path(f"{path}-shm").exists():
            raise _fail(path, "cannot read it (its write-ahead log needs a writable directory)", exc) from None
        try:
            db = connect(path.absolute().as_uri() + "?mode=ro&immutable=1", READ_BUSY_MS)
            version = int(db.execute("PRAGMA user_version").fetchone()[0])
        except sqlite3.Error as exc2:
            raise _fail(path, "cannot read it", exc2) from None
    if version == 0:
        db.close()
        raise StoreError(f"state_path {path}: not a rollback-watchdog state file (no schema)")
    if version > SCHEMA_VERSION:
        db.close()
        raise StoreError(f"state_path {path}: schema version {version} is newer than this program's "
                         f"{SCHEMA_VERSION}; upgrade rollback-watchdog")
    return db


def _migrate(path: Path, db: sqlite3.Connection, create: bool) -> None:
    version = int(db.execute("PRAGMA user_version").fetchone()[0])
    if version > SCHEMA_VERSION:
        raise StoreError(f"state_path {path}: schema version {version} is newer than this program's "
                         f"{SCHEMA_VERSION}; upgrade rollback-watchdog or use another state_path")
    if version == SCHEMA_VERSION:
        return
    if version == 0 and not create:
        raise StoreError(f"state_path {path}: not a rollback-watchdog state file (no schema)")
    if version == 0 and db.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]:
        raise StoreError(f"state_path {path}: a SQLite file with other tables, not a rollback-watchdog state file")
    db.execute("BEGIN IMMEDIATE")
    try:
        version = int(db.execute("PRAGMA user_version").fetchone()[0])  # another process may have migrated
        for number in range(version + 1, SCHEMA_VERSION + 1):
            for statement in MIGRATIONS[number - 1]:
                db.execute(statement)
            db.execute(f"PRAGMA user_version = {number}")
        db.execute("COMMIT")
    except BaseException:
        rollback(db)
        raise
