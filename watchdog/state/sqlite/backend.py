"""The SQLite state backend (`state: {type: sqlite, path: ...}`, or its shorthand `state_path`): one file
on this host, written by one process at a time.

Opening it takes the lock first (watchdog/state/sqlite/lock.py: a second writer must not even create or migrate the
file), then the file (watchdog/state/sqlite/store.py), then hands every write to the writer thread
(watchdog/state/writer.py), so that from then on no write runs on the event loop; the notification outbox
lives in the same file (watchdog/state/sqlite/outbox.py), its old delivered rows pruned at each start. Closing runs
the other way round, after everything that may still write has stopped: the writer drains, the file closes,
the lock goes last, so a successor never takes the lock while a write of this process may still commit.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import field_validator

from watchdog.config.models import AwsSection, State, state_file
from watchdog.state.sqlite.lock import StateLock
from watchdog.state.sqlite.outbox import SqliteOutbox
from watchdog.state.backend import OpenState, StateDeps, StateKind, Verdict
from watchdog.state.peering import Sole
from watchdog.state.written import WrittenState
from watchdog.state.sqlite.store import SqliteStore

class SqliteState(State):
    type: Literal["sqlite"]
    path: Path = Path("./state/watchdog.db")

    @field_validator("path")
    @classmethod
    def _path(cls, v: Path) -> Path:
        return state_file(v)


class SqliteBackend(WrittenState):
    """The state file opened for the daemon: lock held, writer thread running, outbox in the file."""

    def __init__(self, lock: StateLock, store: SqliteStore, instance: str):
        super().__init__(Sole(instance))  # the lock keeps every other process out: this one always acts
        self._lock, self.store = lock, store
        self.outbox = SqliteOutbox(store)
        self._closed = False

    async def refresh(self) -> None:
        return None  # one writer: nothing changes under it

    def _start(self, deps: StateDeps) -> None:
        self._writer.start()
        self.store.attach(self._writer)
        self.outbox.prune(deps.clock.now())

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        # A write stuck inside SQLite: neither close the file under it nor let a successor take the lock
        # while it may still commit. The process exit releases both.
        if await self._drain():
            self.store.close()
            self._lock.release()


async def open_sqlite(cfg: SqliteState, deps: StateDeps) -> OpenState:
    """StoreError or LockHeld (one line) before anything else is opened."""
    lock = StateLock(cfg.path)
    lock.acquire(deps.owner)
    try:
        store = SqliteStore(cfg.path)
    except BaseException:
        lock.release()
        raise
    backend = SqliteBackend(lock, store, deps.instance)
    backend._start(deps)
    return backend


def read_sqlite(cfg: SqliteState, aws: AwsSection) -> SqliteStore:
    """Read-only, also on a read-only mount; a missing file is a StoreError, never created."""
    return SqliteStore(cfg.path, readonly=True)


def describe(cfg: SqliteState) -> str:
    return f"state path {cfg.path}"


async def probe(cfg: SqliteState, aws: AwsSection) -> Verdict:
    """Whether the daemon could open the file, or create it with its directories."""
    path = cfg.path
    if path.exists():
        if not path.is_file():
            return False, "exists and is not a file"
        if not os.access(path, os.R_OK | os.W_OK):
            return False, "exists but is not readable and writable by this user"
        if not os.access(path.parent, os.W_OK | os.X_OK):
            return False, f"{path.parent} is not writable (SQLite needs it for the WAL files)"
        return True, "exists and is writable"
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        return False, f"{parent} is not a directory"
    if not os.access(parent, os.W_OK | os.X_OK):
        return False, f"cannot be created: {parent} is not writable by this user"
    return True, "will be created" + ("" if parent == path.parent else f" (with the directories under {parent})")


KIND = StateKind(type="sqlite", config=SqliteState, open=open_sqlite, read=read_sqlite, describe=describe,
                 probe=probe, shorthand="path")
