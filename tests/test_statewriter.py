"""The state writer: in order, each write retried until it lands, failures reported on the loop."""

from __future__ import annotations

import asyncio
import threading

from watchdog.state.writer import StateWriter, WriteFailure
from watchdog.state.storage import StoreError
from timing import until


async def test_writes_land_in_order_a_failing_one_holds_the_rest_and_flush_waits() -> None:
    changes: list[WriteFailure | None] = []
    writer = StateWriter(on_change=changes.append, initial_backoff=0.001, max_backoff=0.01)
    writer.start()
    landed: list[str] = []
    broken = threading.Event()
    broken.set()

    def write(name: str) -> None:
        if name == "second" and broken.is_set():
            raise StoreError("state_path x: cannot write the audit log: database or disk is full")
        landed.append(name)

    try:
        done: list[str] = []
        for name in ("first", "second", "third"):
            writer.submit(lambda name=name: write(name), then=lambda _, name=name: done.append(name))
        flushed = asyncio.ensure_future(writer.flush())
        await until(lambda: changes, what="the writer reporting the failing write")
        assert landed == ["first"] and not flushed.done()  # "third" waits behind the failing "second"
        assert writer.failure is not None and "disk is full" in writer.failure.error and writer.pending == 3
        broken.clear()
        await asyncio.wait_for(flushed, 5)
        assert landed == ["first", "second", "third"] and done == ["first", "second", "third"]
        assert changes[0] is not None and changes[-1] is None and writer.failure is None  # reported, then cleared
        assert len(changes) == 2  # one report per episode, not one per retry
        assert writer.pending == 0
    finally:
        assert await writer.stop(timeout=1) == 0


async def test_a_bug_in_a_write_is_reported_and_skipped_not_retried_forever() -> None:
    bugs: list[str] = []
    writer = StateWriter(on_bug=bugs.append)
    writer.start()
    try:
        fut = writer.submit(lambda: 1 / 0)
        await writer.flush()
        assert isinstance(fut.exception(), ZeroDivisionError) and bugs == ["ZeroDivisionError: division by zero"]
    finally:
        await writer.stop(timeout=1)


async def test_stop_gives_up_on_a_write_that_keeps_failing_and_counts_what_never_landed() -> None:
    writer = StateWriter(initial_backoff=0.01, max_backoff=0.02)
    writer.start()

    def fail() -> None:
        raise StoreError("database is locked")

    for _ in range(3):
        writer.submit(fail)
    assert await writer.stop(timeout=0.1) == 3


async def test_a_waiter_that_gives_up_does_not_cancel_the_write() -> None:
    """An operator's command waits a while for the file, then answers; the write must still land, and the
    writer thread must live on (cancelling the future under it once ended the thread)."""
    writer = StateWriter(initial_backoff=0.01, max_backoff=0.02)
    writer.start()
    stuck = threading.Event()
    stuck.set()
    landed: list[int] = []

    def write() -> None:
        if stuck.is_set():
            raise StoreError("database is locked")
        landed.append(1)

    try:
        writer.submit(write)
        try:
            await asyncio.wait_for(writer.flush(), 0.05)
        except TimeoutError:
            pass
        stuck.clear()
        await asyncio.wait_for(writer.flush(), 5)
        assert landed == [1]
        writer.submit(lambda: landed.append(2))
        await asyncio.wait_for(writer.flush(), 5)
        assert landed == [1, 2]
    finally:
        assert await writer.stop(timeout=1) == 0


async def test_a_record_with_text_utf8_cannot_hold_lands_and_the_chain_goes_on(tmp_path) -> None:
    """A lone surrogate (JSON's "\\ud83d", in an error message or a config value) once failed to encode on the
    writer thread: its sequence number was never written and every later record waited behind the gap."""
    from datetime import datetime, timezone

    from watchdog.shared.events import Event
    from watchdog.state.sqlite.store import SqliteStore

    store = SqliteStore(tmp_path / "s.db")
    writer = StateWriter()
    writer.start()
    store.attach(writer)
    at = datetime(2024, 1, 1, tzinfo=timezone.utc)
    try:
        store.event(Event("blind", "critical", "svc", "i-1", 1, at, "prometheus said: bad \ud83d", "look",
                          {"\udc00key": "v\udfff"}))
        store.intent(at, "svc", "i-1", 1, "#1 http: PUT /flags/\ud800", 1, False)
        await asyncio.wait_for(store.flush(), 5)
        assert writer.failure is None
    finally:
        await writer.stop(timeout=1)
    records = store.records()
    assert [r.seq for r in records] == [1, 2] and store.verify_chain() == []
    assert records[0].data["why"] == "prometheus said: bad \\ud83d" and records[1].data["action"].endswith("\\ud800")
    store.close()


async def test_a_file_changed_under_the_writer_stops_it_for_good(tmp_path) -> None:
    """Another process appended to the audit log: writing on top would fork the chain. Retrying cannot
    help, so the failure is final (and the daemon's liveness asks for a restart)."""
    import sqlite3
    from datetime import datetime, timezone

    from watchdog.state.sqlite.store import SqliteStore

    path = tmp_path / "s.db"
    store = SqliteStore(path)
    at = datetime(2024, 1, 1, tzinfo=timezone.utc)
    store.intent(at, "svc", "i-1", 1, "#1", 1, False)
    intruder = SqliteStore(path)  # (the lock would refuse it; here it writes around it)
    intruder.intent(at, "svc", "i-1", 1, "#1", 2, False)
    intruder.close()
    changes: list[WriteFailure | None] = []
    writer = StateWriter(on_change=changes.append)
    writer.start()
    store.attach(writer)
    store.intent(at, "svc", "i-1", 1, "#1", 3, False)
    store.intent(at, "svc", "i-1", 1, "#1", 4, False)
    await until_failed(writer)
    assert writer.failure is not None and writer.failure.fatal and "changed by another process" in writer.failure.error
    assert await writer.stop(timeout=1) == 1  # the one behind it never landed
    assert [r.data["attempt"] for r in store.records()] == [1, 2] and store.verify_chain() == []
    assert sqlite3.connect(path).execute("SELECT count(*) FROM audit").fetchone()[0] == 2
    store.close()


async def until_failed(writer: StateWriter) -> None:
    for _ in range(500):
        if writer.failure is not None:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the writer never reported a failure")
