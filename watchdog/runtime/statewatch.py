"""What the watchdog says when its state cannot be written, and when it can again.

The state backend reports on the event loop (its `watch`, watchdog/state/backend.py; the SQLite file's
writer thread, watchdog/state/writer.py); this turns that into the gauge, a critical log line, and a page
that does not go through the state (it is the state that fails): one message per channel, at most every
STATE_PAGE_EVERY, since a disk hovering at full would otherwise page on every flap. The all-clear follows
a page, through the outbox like any event.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta

import structlog

from watchdog.shared.clock import Clock
from watchdog.shared.events import Event
from watchdog.runtime.executor import TargetExecutor
from watchdog.support.metrics import Metrics
from watchdog.notify import Notifier
from watchdog.state.storage import StateHealth, WriteFailure

log = structlog.get_logger("watchdog.runtime.statewatch")
STATE_PAGE_EVERY = timedelta(minutes=10)


class StateWatch:
    def __init__(self, metrics: Metrics, notifier: Notifier, clock: Clock, targets: Mapping[str, TargetExecutor],
                 health: StateHealth):
        self._metrics, self._notifier, self._clock = metrics, notifier, clock
        self._targets = targets  # the runtime's own mapping: a reload swaps its contents (Runtime.swap)
        self._health = health
        self._paged_at: datetime | None = None
        self._paged = False

    def changed(self, failure: WriteFailure | None) -> None:
        self._metrics.state_writable.set(0 if failure else 1)
        if failure is not None:
            log.critical("state_write_failed", error=failure.error, since=failure.since.isoformat(),
                         waiting=self._health.pending, why="no action runs until its intent is in the state file")
            self.page(failure)
            return
        log.warning("state_write_recovered", why="the state file can be written again")
        if self._paged:  # the all-clear follows a page, not every short flap the page limit swallowed
            self._paged = False
            for ex in self._targets.values():
                ex.state_writable("the state file can be written again", "decisions and actions go on")

    def page(self, failure: WriteFailure) -> None:
        targets, now = self._targets, self._clock.now()
        if not targets:
            return
        if self._paged_at is not None and now - self._paged_at < STATE_PAGE_EVERY:
            return
        self._paged_at, self._paged = now, True
        why = f"the state file cannot be written: {failure.error}"
        nxt = ("no action runs until its intent is recorded; free disk space or end the other process's lock"
               if not failure.fatal else "restart the watchdog: it must read the state file again")
        # Sent directly: the outbox lives in the very file that cannot be written.
        self._notifier.send_direct([ev for ex in targets.values() for ev in ex.machine.state_file(now, False, why, nxt)
                                    if isinstance(ev, Event)])
