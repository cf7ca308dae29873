"""Writes queued together land in one transaction (group commit), in order, all or none; a bug in one of
them is undone alone. A real SQLite file; the statements the writing connection runs are observed with
SQLite's own trace callback."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import pytest

from watchdog.state.sqlite.store import SqliteStore
from watchdog.state.writer import StateWriter, WriteFailure

AT = datetime(2026, 12, 1, 3, 0, tzinfo=timezone.utc)


class Held:
    """A store with its writer, whose thread is held busy while writes queue behind it."""

    def __init__(self, path: Path) -> None:
        self.bugs: list[str] = []
        self.changes: list[WriteFailure | None] = []
        self.store = SqliteStore(path)
        self.writer = StateWriter(on_bug=self.bugs.append, on_change=self.changes.append, initial_backoff=0.001,
                                  max_backoff=0.01)
        self.statements: list[str] = []
        db = self.store._db  # the writing connection: observed, not changed
        assert db is not None
        db.set_trace_callback(self.statements.append)
        self.gate = threading.Event()

    def hold(self) -> None:
        self.writer.submit(self.gate.wait)  # the thread waits here: what comes next queues up

    def intent(self, attempt: int) -> None:
        self.store.intent(AT, "svc", "i-1", 1, "#1", attempt, False)

    def commits(self) -> int:
        return sum(1 for s in self.statements if s == "COMMIT")

    def attempts(self) -> list[int]:
        return [r.data["attempt"] for r in self.store.records()]


@pytest.fixture
async def held(tmp_path: Path) -> Iterator[Held]:
    h = Held(tmp_path / "state.db")
    h.writer.start()
    h.store.attach(h.writer)
    yield h
    h.gate.set()
    await h.writer.stop(timeout=5)
    h.store.close()


async def test_writes_queued_together_land_in_one_transaction_in_order(held: Held) -> None:
    held.hold()
    for attempt in range(1, 6):
        held.intent(attempt)
    held.gate.set()
    await held.store.flush()
    assert held.attempts() == [1, 2, 3, 4, 5] and held.store.verify_chain() == []
    assert held.commits() == 1  # one fsync for the five, not five


async def test_a_write_queued_alone_is_its_own_transaction(held: Held) -> None:
    held.intent(1)
    await held.store.flush()
    held.intent(2)
    await held.store.flush()
    assert held.attempts() == [1, 2] and held.commits() == 2


async def test_a_bug_in_one_joined_write_is_undone_alone_and_the_others_land(held: Held) -> None:
    held.hold()
    held.intent(1)

    def buggy(db: sqlite3.Connection) -> None:
        db.execute("DELETE FROM pauses")  # done, then undone with the rest of this write alone
        raise ZeroDivisionError("division by zero")

    from watchdog.core.pause import Pause

    held.store.save_pause(Pause("svc", AT, "kept"))
    held.store.write("write something", buggy)
    held.intent(2)
    held.gate.set()
    await held.store.flush()
    assert held.attempts() == [1, 2] and held.store.verify_chain() == []
    assert held.bugs == ["ZeroDivisionError: division by zero"]
    assert [p.scope for p in held.store.pauses()[0]] == ["svc"]  # the bug's DELETE did not land
    assert held.commits() == 1


async def test_a_sqlite_error_in_one_joined_write_undoes_them_all_and_the_group_lands_when_it_clears(
        held: Held) -> None:
    failures = [sqlite3.OperationalError("disk I/O error")] * 2

    def flaky(db: sqlite3.Connection) -> None:
        if failures:
            raise failures.pop()

    held.hold()
    held.intent(1)
    held.store.write("write the flaky row", flaky)
    held.intent(2)
    held.gate.set()
    await held.store.flush()
    assert held.attempts() == [1, 2] and held.store.verify_chain() == []
    assert held.statements.count("ROLLBACK") == 2 and held.commits() == 1  # intent 1 undone with it, twice
    assert held.changes[0] is not None and "cannot write the flaky row: disk I/O error" in held.changes[0].error
    assert held.changes[-1] is None  # reported, then cleared
