"""The state writer: in order, each write retried until it lands, failures reported on the loop."""

from __future__ import annotations

import asyncio
import threading

from watchdog.statewriter import StateWriter, WriteFailure
from watchdog.storage import StoreError


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
        while not changes:
            await asyncio.sleep(0.005)
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
