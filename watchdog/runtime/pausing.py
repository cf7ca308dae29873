"""Operators' pauses: held in memory for the machines, kept in the store, announced to every target.

A pause is a maintenance window: a restart inside it (kill -9, an upgrade, a reboot) must keep it, so
each one is stored with its expiry and restored at start (`restore`), and one that ended while the
watchdog was down is dropped and said.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime, timedelta

import structlog

from watchdog.shared.clock import Clock
from watchdog.runtime.executor import TargetExecutor
from watchdog.support.metrics import Metrics
from watchdog.core.pause import GLOBAL, Pause, Pauses
from watchdog.state.storage import PauseStore

log = structlog.get_logger("watchdog.runtime.pausing")


class PauseKeeper:
    def __init__(self, store: PauseStore, metrics: Metrics, clock: Clock,
                 targets: Callable[[], Mapping[str, TargetExecutor]]):
        self._store, self._metrics, self._clock = store, metrics, clock
        self._targets = targets  # read each time: a reload replaces the executors
        self.pauses = Pauses()

    def reader(self, target: str) -> Callable[[datetime], str | None]:
        """For a target's machine: the pause holding it at a given time, described, or None."""
        def paused(now: datetime) -> str | None:
            p = self.pauses.active(target, now)
            return p.describe() if p else None

        return paused

    def restore(self) -> None:
        now, restored = self._clock.now(), []
        pauses, unreadable = self._store.pauses()
        for scope, why in unreadable:  # never silent: a lost pause lets actions run in a maintenance window
            log.critical("pause_unreadable", scope=scope, why=why, next="pause again by hand if it should hold")
        for p in pauses:
            if p.until <= now or (p.scope != GLOBAL and p.scope not in self._targets()):
                self._store.delete_pause(p.scope)
                log.info("pause_dropped", scope=p.scope, until=p.until.isoformat(), reason=p.reason,
                         why="it ended while the watchdog was stopped" if p.until <= now else "no such target now")
                continue
            self.pauses.set(p.scope, p.until, p.reason)
            restored.append({"scope": p.scope, "until": p.until.isoformat(), "reason": p.reason})
        self._gauge(now)
        if restored:
            log.warning("pauses_restored", pauses=restored, why="paused before the restart; no action until they end")

    def adopt(self) -> None:
        """The pauses another watchdog set or ended on a shared state (read again by a lease round): a pause made
        through one watchdog's API holds on all of them. It was announced where it was made; here it is logged."""
        now = self._clock.now()
        stored = {p.scope: p for p in self._store.pauses()[0] if p.until > now}
        held = {p.scope: p for p in self.pauses.all(now)}
        for scope, p in stored.items():
            if held.get(scope) != p:
                self.pauses.set(scope, p.until, p.reason)
                log.warning("pause_adopted", scope=scope, until=p.until.isoformat(), reason=p.reason,
                            why="set through another watchdog", next="no action until it ends")
        for scope, p in held.items():
            if scope not in stored:
                self.pauses.clear(scope)
                log.warning("pause_ended_elsewhere", scope=scope, why="resumed through another watchdog",
                            next="acting on alarms again")
        self._gauge(now)

    def set(self, target: str | None, duration: timedelta, reason: str) -> Pause:
        now = self._clock.now()
        pause = self.pauses.set(target or GLOBAL, now + duration, reason)
        self._store.save_pause(pause)
        self._announce("paused", pause, now, f"paused: {reason}", f"no action until {pause.until:%H:%M:%S}Z or resume")
        return pause

    def clear(self, target: str | None, reason: str) -> Pause | None:
        pause = self.pauses.clear(target or GLOBAL)
        if pause is not None:
            self._store.delete_pause(pause.scope)
            self._announce("resumed", pause, self._clock.now(), f"resumed: {reason}", "acting on alarms again")
        return pause

    def drop_removed(self) -> None:
        """After a reload: the pause of a target the new config no longer has is dropped, as at start (it could
        not be resumed by name, and would hold a later target of that name)."""
        targets = self._targets()
        for pause in self.pauses.all(self._clock.now()):
            if pause.scope != GLOBAL and pause.scope not in targets:
                self.pauses.clear(pause.scope)
                self._store.delete_pause(pause.scope)
                log.info("pause_dropped", scope=pause.scope, until=pause.until.isoformat(), reason=pause.reason,
                         why="the reload removed the target")

    def expire(self, now: datetime) -> None:
        for pause in self.pauses.expire(now):
            self._store.delete_pause(pause.scope)
            self._announce("resumed", pause, now, "the pause expired", "acting on alarms again")

    def scope_targets(self, scope: str) -> list[str]:
        """The targets a pause holds now: a target's pause outlives the target if a reload removed it."""
        targets = self._targets()
        return list(targets) if scope == GLOBAL else [scope] if scope in targets else []

    def _announce(self, kind: str, pause: Pause, now: datetime, why: str, nxt: str) -> None:
        self._gauge(now)
        targets = self._targets()
        for name in self.scope_targets(pause.scope):
            targets[name].pause_changed(kind == "paused", why, nxt)

    def _gauge(self, now: datetime) -> None:
        self._metrics.paused.set(1 if any(p.scope == GLOBAL for p in self.pauses.all(now)) else 0)
