"""What every backend written through a StateWriter (watchdog/state/writer.py) does alike once opened: the SQLite
file's and the DynamoDB table's. The writer's failures reach the runtime's listener (told at once of one
already under way), the events the audit log has and the outbox never got are queued again at the start, and
closing drains the writer before the backend closes what lies under it."""

from __future__ import annotations

from typing import Any, Protocol

import structlog

from watchdog.state.backend import Requeue
from watchdog.state.codec import event_from_audit
from watchdog.state.journal import Record
from watchdog.state.peering import Peering
from watchdog.state.storage import StateListener, WriteFailure
from watchdog.state.writer import StateWriter

log = structlog.get_logger("watchdog.state")


class _Unwatched:
    """Before the runtime watches: the writer's state is kept (`failure`), and `watch` tells it then."""

    def changed(self, failure: WriteFailure | None) -> None:
        return None


class _Requeueable(Protocol):
    def events_after(self, seq: int) -> list[Record]: ...


class _Marked(Protocol):
    def last_audit_seq(self) -> int | None: ...


def write_crashed(error: str) -> None:
    log.error("state_write_crashed", error=error, why="a write the state would not take; skipped")


class WrittenState:
    """The writer and its listener; `store` and `outbox` are the subclass's."""

    store: Any
    outbox: Any

    def __init__(self, peers: Peering) -> None:
        self.peers = peers
        self._listener: StateListener = _Unwatched()
        self._writer = StateWriter(on_change=self._changed, on_bug=write_crashed)
        self.health = self._writer  # its `failure` and `pending`: what the loop last heard from its thread

    def watch(self, listener: StateListener) -> None:
        self._listener = listener
        if self._writer.failure is not None:
            listener.changed(self._writer.failure)

    def _changed(self, failure: WriteFailure | None) -> None:
        self._listener.changed(failure)

    def requeue(self, replay: Requeue, taken: str | None = None) -> None:
        if taken is not None:
            return  # a state of one's own: no target is ever taken over
        outbox: _Marked = self.outbox
        last = outbox.last_audit_seq()
        if last is None:  # nothing was ever handed to the outbox with its mark: nothing to anchor on
            return
        self._replay(replay, last)

    def _replay(self, replay: Requeue, after: int, target: str | None = None) -> None:
        store: _Requeueable = self.store
        events = []
        for r in store.events_after(after):
            if target is not None and r.target != target:
                continue
            try:
                events.append((r.seq, event_from_audit(r.target, r.incident, r.level, r.at, r.data), r.dry_run))
            except ValueError as exc:  # another version's kind, a hand edit: never a reason not to start
                log.critical("notification_unreplayable", audit_seq=r.seq, target=r.target, incident=r.incident,
                             why=f"the audit record cannot be read back as an event: {type(exc).__name__}",
                             next="not sent; it stays in the audit log")
        if events:
            log.warning("notifications_replayed", events=len(events), queued=replay(events))

    async def _drain(self) -> bool:
        """Let the writer land what it holds; False while a write is still under way (nothing may close then)."""
        lost = await self._writer.stop(timeout=5)
        if lost:
            log.critical("state_writes_lost", count=lost, why="the state could not be written before the stop")
        if self._writer.alive:
            log.critical("state_writer_still_running", why="a write did not return; what it writes is kept open")
            return False
        return True
