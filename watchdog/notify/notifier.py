"""Announcing events without ever holding up a rollback.

`publish` only writes to the outbox (a committed row per matching channel) and
wakes that channel's worker; the executor never waits for a delivery. Each
channel has its own worker, so a hanging Slack does not delay PagerDuty. A
failed send is retried from the outbox with backoff (and a 429's Retry-After);
after the last try, or at once when retrying cannot help, the message is
dead-lettered. The audit log records each message's result.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import structlog

from watchdog.clock import Clock
from watchdog.config.notifications import Notification
from watchdog.escalation import Event
from watchdog.journal import Journal
from watchdog.metrics import Metrics
from watchdog.notify.base import SEVERITY_RANK, Channel, DeliveryFailed, Message
from watchdog.outbox import MemoryOutbox, Outbox, Pending
from watchdog.store import StoreError

log = structlog.get_logger("watchdog.notify")


def accepts(cfg: Notification, event: Event) -> bool:
    if cfg.targets is not None and event.target not in cfg.targets:
        return False
    if event.kind in cfg.always_events:
        return True
    return (
        SEVERITY_RANK[event.severity] >= SEVERITY_RANK[cfg.min_severity]
        and (cfg.events is None or event.kind in cfg.events)
    )


# A Retry-After longer than this (a proxy answering "come back tomorrow") is not honoured: the head of
# a channel's queue would hold every later page behind it.
MAX_RETRY_AFTER = 600.0


def backoff(cfg: Notification, attempts: int, retry_after: float | None, rng: random.Random) -> float:
    """Seconds before the next try: doubling with equal jitter, never sooner than the receiver asked
    (up to MAX_RETRY_AFTER)."""
    r = cfg.retry
    base = min(r.max_backoff.total_seconds(), r.initial_backoff.total_seconds() * 2 ** (attempts - 1))
    delay = base / 2 + rng.uniform(0, base / 2)
    return max(delay, min(retry_after or 0.0, MAX_RETRY_AFTER))


@dataclass
class ChannelState:
    """What /status says of a channel."""

    type: str
    sent: int = 0
    failed: int = 0
    last_sent_at: datetime | None = None
    last_error: str | None = None
    last_error_at: datetime | None = None
    failing: bool = False
    wake: asyncio.Event = field(default_factory=asyncio.Event)


class Notifier:
    def __init__(self, metrics: Metrics, clock: Clock, outbox: Outbox | None = None, journal: Journal | None = None,
                 rng: random.Random | None = None):
        self._metrics = metrics
        self._clock = clock
        self._outbox: Outbox = outbox or MemoryOutbox()
        self._journal = journal
        self._rng = rng or random.Random()
        self._channels: dict[str, tuple[Notification, Channel]] = {}
        self._state: dict[str, ChannelState] = {}
        self._workers: dict[str, asyncio.Task[None]] = {}
        self._listeners: list[Callable[[Event, bool], None]] = []
        self._keys = 0

    def bind(self, outbox: Outbox, journal: Journal) -> None:
        """At start: the durable outbox and the audit log, once the store is open."""
        self._outbox, self._journal = outbox, journal

    def set_channels(self, channels: Sequence[tuple[Notification, Channel]]) -> list[Channel]:
        """At start and on reload. Waiting messages stay in the outbox for a channel of the same name.
        Returns the channels replaced (the caller closes them)."""
        old = [ch for _, ch in self._channels.values()]
        for task in self._workers.values():
            task.cancel()  # an interrupted send stays pending and is sent again by the new worker
        self._workers.clear()
        self._channels = {cfg.channel_name: (cfg, ch) for cfg, ch in channels}
        stranded = self._outbox.strand(set(self._channels), self._clock.now())
        if stranded:
            log.error("notifications_stranded", count=stranded,
                      why="their channel is no longer configured (renamed or removed); dead-lettered")
        self._state = {name: self._state.get(name) or ChannelState(cfg.type) for name, (cfg, _) in self._channels.items()}
        for name in self._channels:
            self._state[name].wake = asyncio.Event()
            self._gauge(name)
        return old

    def listen(self, fn: Callable[[Event, bool], None]) -> None:
        """In-process listeners (the demo's timeline) are called synchronously."""
        self._listeners.append(fn)

    def publish(self, event: Event, dry_run: bool = False, key: str | None = None) -> None:
        """`key` (the event's audit record) keeps a repeated publish of one event from queueing it twice."""
        for fn in self._listeners:
            try:
                fn(event, dry_run)
            except Exception as exc:  # a listener's bug must not stop the caller (the executor) nor the channels
                log.error("notification_listener_failed", target=event.target, kind=event.kind, error=type(exc).__name__)
        if key is None:
            self._keys += 1
            key = f"local-{event.at.timestamp()}-{self._keys}"
        now = self._clock.now()
        for name, (cfg, _) in self._channels.items():
            if not accepts(cfg, event):
                continue
            try:
                queued = self._outbox.enqueue(name, key, event, dry_run, now)
            except StoreError as exc:  # a full disk must not stop the rollback that is announcing itself
                self._metrics.notifications.labels(name, "lost").inc()
                log.error("notification_lost", channel=name, target=event.target, incident=event.incident,
                          event_kind=event.kind, error=str(exc))
                continue
            if queued is not None:
                self._gauge(name)
                self._state[name].wake.set()

    def replay(self, events: Sequence[tuple[str, Event, bool]]) -> int:
        """Queue events recorded in the audit log but never queued (a kill between the two writes).
        Listeners are not called again: they saw the event when it happened."""
        now = self._clock.now()
        queued = 0
        for key, event, dry_run in events:
            for name, (cfg, _) in self._channels.items():
                if accepts(cfg, event) and self._outbox.enqueue(name, key, event, dry_run, now) is not None:
                    queued += 1
                    self._state[name].wake.set()
        for name in self._channels:
            self._gauge(name)
        return queued

    async def run(self) -> None:
        """Supervises one worker per channel; a worker that crashes is logged and started again."""
        while True:
            for name in self._channels:
                task = self._workers.get(name)
                if task is None or task.done():
                    if task is not None and not task.cancelled() and task.exception() is not None:
                        log.error("notification_worker_crashed", channel=name, error=type(task.exception()).__name__)
                    self._workers[name] = asyncio.create_task(self._work(name), name=f"notify:{name}")
            await asyncio.sleep(1.0)

    async def drain(self, timeout: float) -> None:
        """At shutdown: give due messages a chance; whatever is left stays in the outbox for the next start."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while loop.time() < deadline:
            if not any(self._due(name) for name in self._channels):
                return
            await asyncio.sleep(0.05)
        left = sum(self._outbox.counts(name)["pending"] for name in self._channels)
        log.warning("notifications_undelivered", count=left, kept="in the outbox for the next start")

    async def close(self) -> None:
        for task in self._workers.values():
            task.cancel()
        await asyncio.gather(*self._workers.values(), return_exceptions=True)
        self._workers.clear()
        for _, ch in self._channels.values():
            await ch.close()

    def status(self) -> dict[str, Any]:
        out = {}
        for name, st in self._state.items():
            if name not in self._channels:
                continue
            counts = self._outbox.counts(name)
            out[name] = {
                "type": st.type, "up": not st.failing, "pending": counts["pending"], "dead": counts["dead"],
                "sent": st.sent, "failed_attempts": st.failed,
                "last_sent_at": st.last_sent_at, "last_error": st.last_error, "last_error_at": st.last_error_at,
            }
        return out

    def _gauge(self, name: str) -> None:
        self._metrics.notifications_pending.labels(name).set(self._outbox.counts(name)["pending"])

    def _due(self, name: str) -> bool:
        head = self._outbox.head(name)
        return head is not None and head.next_at <= self._clock.now().timestamp()

    async def _work(self, name: str) -> None:
        state = self._state[name]
        while True:
            head = self._outbox.head(name)
            if head is None:
                state.wake.clear()
                await state.wake.wait()
                continue
            wait = head.next_at - self._clock.now().timestamp()
            if wait > 0:
                await asyncio.sleep(min(wait, 60.0))
                continue
            await self._attempt(name, head)

    async def _attempt(self, name: str, p: Pending) -> None:
        cfg, channel = self._channels[name]
        state, ev = self._state[name], p.event
        thread = self._outbox.thread(name, ev.incident) if ev.incident else None
        attempts = p.attempts + 1
        retry_after, permanent = None, False
        try:
            async with asyncio.timeout(cfg.timeout.total_seconds()):
                ref = await channel.send(Message(p.id, name, ev, p.dry_run, thread))
        except DeliveryFailed as exc:
            reason, retry_after, permanent = exc.reason, exc.retry_after, exc.permanent
        except TimeoutError:
            reason = f"no answer within {cfg.timeout.total_seconds():g}s"
        except Exception as exc:  # a channel's bug: retried like any failure, never fatal to the worker
            reason = f"unexpected {type(exc).__name__}"  # the type only: messages can quote URLs and tokens
        else:
            now = self._clock.now()
            self._outbox.mark_sent(p.id, now)
            if ref and ev.incident and thread is None:
                self._outbox.set_thread(name, ev.incident, ref)
            state.sent, state.last_sent_at, state.failing = state.sent + 1, now, False
            self._settled(name, p, "sent", attempts, "delivered")
            return
        now = self._clock.now()
        state.failed, state.last_error, state.last_error_at, state.failing = state.failed + 1, reason, now, True
        self._metrics.notifications.labels(name, "failed").inc()
        if permanent or attempts >= cfg.retry.attempts:
            self._outbox.mark_dead(p.id, attempts, now, reason)
            why = "retrying cannot help" if permanent else f"after {attempts} attempts"
            self._settled(name, p, "dead", attempts, f"{reason} ({why})")
            return
        delay = backoff(cfg, attempts, retry_after, self._rng)
        self._outbox.mark_retry(p.id, attempts, now.timestamp() + delay, reason)
        log.warning("notification_failed", channel=name, target=ev.target, incident=ev.incident, event_kind=ev.kind,
                    attempt=attempts, error=reason, retry_in=round(delay, 3))

    def _settled(self, name: str, p: Pending, outcome: str, attempts: int, detail: str) -> None:
        ev = p.event
        self._metrics.notifications.labels(name, outcome).inc()
        self._gauge(name)
        if self._journal is not None:
            self._journal.notification(self._clock.now(), ev.target, ev.incident, ev.level, name, ev.kind, p.id,
                                       outcome, attempts, detail, p.dry_run)
        fn = log.info if outcome == "sent" else log.error
        fn("notification_" + outcome, channel=name, target=ev.target, incident=ev.incident, event_kind=ev.kind,
           attempts=attempts, detail=detail)
