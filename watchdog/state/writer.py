"""Every write to the state file, off the event loop, in order, each retried until it lands.

A write that blocks (another process holds the file's write lock for longer than
the busy timeout) or fails (a full disk, an I/O error) must neither freeze the
event loop (health, the API, other targets, the metrics) nor be dropped (a lost
intent or event breaks the journal's promise). So writes go to one thread, in
the order they were made, and a failed one is retried with backoff until it
succeeds; nothing behind it is written first. The state file therefore always
holds a prefix of what the watchdog decided. `flush()` waits until everything
made so far has landed: the executor calls it after an intent, so no action runs
before its intent is durable.

Writes queued together share one transaction (group commit) when they come from one
joiner (the SQLite store): a level's start queues its incident, events, messages and
intent at once, and one fsync lands them all instead of one each (4 ms apiece on
the bench's disk: the level 1 request 20 ms sooner). They still land in order, all
or none; a bug in one is undone alone and the others land.

While writes fail, `failure` says since when and why; `on_change` is called on
the event loop when that starts, when the error changes, and when it ends.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import queue
import threading
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any, TypeVar

from watchdog.state.storage import StateConflict, StoreError, WriteFailure

T = TypeVar("T")
_STOP = object()
MAX_JOINED = 64  # writes in one transaction at most: a long queue still reports each group's failure soon
__all__ = ["StateWriter", "WriteFailure"]
Item = tuple[Callable[[], Any], "concurrent.futures.Future[Any]", "Callable[[Any], None] | None"]


class StateWriter:
    def __init__(
        self,
        *,
        on_change: Callable[[WriteFailure | None], None] = lambda failure: None,
        on_bug: Callable[[str], None] = lambda error: None,
        initial_backoff: float = 0.05,
        max_backoff: float = 2.0,
        now: Callable[[], datetime] = lambda: datetime.now(timezone.utc),
    ):
        self._on_change = on_change
        self._on_bug = on_bug
        self._initial, self._max = initial_backoff, max_backoff
        self._now = now
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._abandon = threading.Event()  # at shutdown: a write still failing gives up
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._queued = 0  # made and not yet landed; kept on the loop (the thread reports through it)
        self._gave_up = 0
        self.failure: WriteFailure | None = None  # as the loop last heard it

    @property
    def alive(self) -> bool:
        """The thread still runs (after `stop`: a write did not return)."""
        return self._thread is not None and self._thread.is_alive()

    @property
    def pending(self) -> int:
        return self._queued

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._thread = threading.Thread(target=self._run, name="state-writer", daemon=True)
        self._thread.start()

    def submit(self, fn: Callable[[], T], then: Callable[[T], None] | None = None) -> concurrent.futures.Future[T]:
        """Queue `fn` (it runs on the writer thread). `then(result)` runs on the event loop once it has landed."""
        fut: concurrent.futures.Future[T] = concurrent.futures.Future()
        self._queued += 1
        self._queue.put((fn, fut, then))
        return fut

    async def flush(self) -> None:
        """Return once every write made before this call has landed (waits as long as they keep failing)."""
        await self.landed(self.submit(lambda: None))

    @staticmethod
    async def landed(fut: concurrent.futures.Future[T]) -> T:
        """Await a submitted write. Shielded: a waiter that gives up (a timeout, a shutdown) must not
        cancel the write itself, which still lands in its turn."""
        return await asyncio.shield(asyncio.wrap_future(fut))

    async def stop(self, timeout: float) -> int:
        """Let the queue drain for up to `timeout` seconds; returns how many writes never landed."""
        if self._thread is None:
            return 0
        self._queue.put(_STOP)
        await asyncio.to_thread(self._thread.join, timeout)
        if self._thread.is_alive():
            self._abandon.set()  # the write being retried gives up; what is behind it is counted below
            await asyncio.to_thread(self._thread.join, 5.0)
        if self._thread.is_alive():
            return self._queued  # still in a write: nothing behind it may be touched
        lost = self._gave_up
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is not _STOP:
                lost += 1
                _settle(item[1], exc=StoreError("the watchdog stopped before this write landed"))
        self._thread = None
        return lost

    # --- the writer thread ------------------------------------------------------------

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is _STOP:
                return
            batch, stop = [item], False
            while len(batch) < MAX_JOINED:  # what else is queued now joins it
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is _STOP:
                    stop = True
                    break
                batch.append(more)
            while batch:
                group = _joined(batch)
                del batch[:len(group)]
                if not self._attempt_until_landed(group):
                    for _, fut, _then in batch:  # behind a write given up or refused: never written
                        _settle(fut, exc=StoreError("the watchdog stopped before this write landed"))
                    self._gave_up += len(batch)
                    return  # abandoned at shutdown, or the file is another process's
            if stop:
                return

    def _attempt_until_landed(self, group: list[Item]) -> bool:
        """Land `group` (one write, or writes of one joiner in one transaction), retrying while it fails."""
        delay, attempts, since = self._initial, 0, None
        futs = [fut for _, fut, _ in group]
        while True:
            try:
                if len(group) == 1:
                    outcomes: list[tuple[Any, Exception | None]] = [(group[0][0](), None)]
                else:
                    outcomes = group[0][0].joiner([fn for fn, _, _ in group])  # type: ignore[attr-defined]
            except StateConflict as exc:
                # The file is not what this process wrote: nothing more may be written on top of it.
                for fut in futs:
                    _settle(fut, exc=exc)
                self._gave_up += len(futs) - 1  # those joined with the refused one (usually the first)
                self._to_loop(self._failing, WriteFailure(since or self._now(), str(exc), attempts + 1, fatal=True))
                return False
            except StoreError as exc:
                attempts += 1
                since = since or self._now()
                self._to_loop(self._failing, WriteFailure(since, str(exc), attempts))
                if self._abandon.wait(delay):
                    for fut in futs:
                        _settle(fut, exc=exc)
                    self._gave_up += len(futs)
                    return False
                delay = min(delay * 2, self._max)
                continue
            except Exception as exc:  # a bug in the write itself: retrying would fail the same way forever
                outcomes = [(None, exc)]
            for (_, fut, then), (result, bug) in zip(group, outcomes):
                if bug is not None:
                    _settle(fut, exc=bug)
                    self._to_loop(self._on_bug, f"{type(bug).__name__}: {bug}")
                else:
                    _settle(fut, result=result)
                self._to_loop(self._landed, fut, then)
            if attempts:
                self._to_loop(self._failing, None)
            return True

    def _to_loop(self, fn: Callable[..., None], *args: Any) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            try:
                loop.call_soon_threadsafe(fn, *args)
            except RuntimeError:  # the loop closed between the check and the call
                pass

    # --- back on the event loop -----------------------------------------------------------

    def _landed(self, fut: concurrent.futures.Future[Any], then: Callable[[Any], None] | None) -> None:
        self._queued -= 1
        if then is not None and fut.exception() is None:
            then(fut.result())

    def _failing(self, failure: WriteFailure | None) -> None:
        before = self.failure
        if before is not None and before.fatal:
            return  # final: nothing is written any more
        self.failure = failure
        if failure is None or before is None or before.error != failure.error:
            if (before, failure) != (None, None):
                self._on_change(failure)


def _joined(batch: list[Item]) -> list[Item]:
    """The first write of `batch` and those after it that share its joiner (one transaction), in order."""
    joiner = getattr(batch[0][0], "joiner", None)
    if joiner is None:
        return batch[:1]
    n = 1
    while n < len(batch) and getattr(batch[n][0], "joiner", None) is joiner:
        n += 1
    return batch[:n]


def _settle(fut: concurrent.futures.Future[Any], result: Any = None, exc: BaseException | None = None) -> None:
    """Never raises: a future nobody waits for any more must not end the writer thread."""
    try:
        if exc is not None:
            fut.set_exception(exc)
        else:
            fut.set_result(result)
    except concurrent.futures.InvalidStateError:
        pass
