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
import secrets
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from typing import Any

import structlog

from watchdog.shared.clock import Clock
from watchdog.config.notifications import Notification
from watchdog.shared.events import Event
from watchdog.support.metrics import Metrics
from watchdog.notify.base import SEVERITY_RANK, Channel, DeliveryFailed, Message
from watchdog.state.outbox import MemoryOutbox, Outbox, Pending
from watchdog.support.retrying import backoff as retry_backoff
from watchdog.state.storage import AuditJournal, StoreError
from watchdog.support.tasks import Tasks

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
    """Seconds before the next try: the retries' one backoff, never sooner than the receiver asked
    (up to MAX_RETRY_AFTER)."""
    delay = retry_backoff(cfg.retry.initial_backoff, cfg.retry.max_backoff, attempts, rng)
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
    def __init__(self, metrics: Metrics, clock: Clock, outbox: Outbox | None = None, journal: AuditJournal | None = None,
                 rng: random.Random | None = None, tasks: Tasks | None = None, restart_after: float = 1.0):
        self._metrics = metrics
        self._clock = clock
        self._tasks = tasks or Tasks()  # the runtime's, so that its stop sees the workers too
        self._restart_after = restart_after  # a worker that crashed starts again after this many seconds
        self._started = False
        # The outbox and the audit log of the runtime's state (watchdog/state/backend.py), given whole at
        # construction; without them (a test's notifier) an outbox in memory and no audit records.
        self._outbox: Outbox = outbox or MemoryOutbox()
        self._journal = journal
        self._rng = rng or random.Random()
        self._channels: dict[str, tuple[Notification, Channel]] = {}
        self._state: dict[str, ChannelState] = {}
        self._workers: dict[str, asyncio.Task[Any]] = {}
        self._listeners: list[Callable[[Event, bool], None]] = []
        self._keys = 0
        self._direct_tasks: set[asyncio.Task[Any]] = set()
        self._settles: set[asyncio.Future[Any]] = set()  # marks (and their audit records) still on their way
        self._settling: set[int] = set()  # ids whose new state (sent, retry, dead) has not landed yet
        self._last_counts: dict[str, dict[str, int]] = {}  # outbox ids sent whose "sent" mark has not landed yet

    def set_channels(self, channels: Sequence[tuple[Notification, Channel]]) -> list[Channel]:
        """At start and on reload. Waiting messages stay in the outbox for a channel of the same name.
        Returns the channels replaced (the caller closes them)."""
        old = [ch for _, ch in self._channels.values()]
        for task in self._workers.values():
            task.cancel()  # an interrupted send stays pending and is sent again by the new worker
        self._workers.clear()
        self._channels = {cfg.channel_name: (cfg, ch) for cfg, ch in channels}

        def stranded(count: int) -> None:
            if count:
                log.error("notifications_stranded", count=count,
                          why="their channel is no longer configured (renamed or removed); dead-lettered")

        self._outbox.strand(set(self._channels), self._clock.now(), stranded)
        self._state = {name: self._state.get(name) or ChannelState(cfg.type) for name, (cfg, _) in self._channels.items()}
        for name in self._channels:
            self._state[name].wake = asyncio.Event()
            self._gauge(name)
        if self._started:
            self._start_workers()
        return old

    def start(self) -> None:
        """One worker per channel, each started again if it crashes; set_channels replaces them."""
        self._started = True
        self._start_workers()

    def _start_workers(self) -> None:
        for name in self._channels:
            self._workers[name] = self._tasks.keep(partial(self._work, name), f"notify:{name}", self._restart_after)

    def listen(self, fn: Callable[[Event, bool], None]) -> None:
        """In-process listeners (the demo's timeline) are called synchronously."""
        self._listeners.append(fn)

    def publish(self, event: Event, dry_run: bool = False, audit_seq: int | None = None) -> None:
        """`audit_seq` (the event's audit record) names the message, so one event is never queued twice for a
        channel, and moves the outbox's mark (see `replay`)."""
        for fn in self._listeners:
            try:
                fn(event, dry_run)
            except Exception as exc:  # a listener's bug must not stop the caller (the executor) nor the channels
                log.error("notification_listener_failed", target=event.target, kind=event.kind, error=type(exc).__name__)
        if audit_seq is None:
            self._keys += 1
            key = f"local-{event.at.timestamp()}-{self._keys}"
        else:
            key = f"audit-{audit_seq}"
        self._enqueue(key, event, dry_run, audit_seq)

    def _enqueue(self, key: str, event: Event, dry_run: bool, audit_seq: int | None) -> list[str]:
        names = [name for name, (cfg, _) in self._channels.items() if accepts(cfg, event)]
        if not names and audit_seq is None:
            return names
        try:
            self._outbox.enqueue(key, event, dry_run, names, self._clock.now(), audit_seq, lambda: self._queued(names))
        except StoreError as exc:  # unqueued (tests, tools): a full disk must not stop the rollback announcing itself
            for name in names:
                self._metrics.notifications.labels(name, "lost").inc()
                log.error("notification_lost", channel=name, target=event.target, incident=event.incident,
                          event_kind=event.kind, error=str(exc))
        return names

    def _queued(self, names: Sequence[str]) -> None:
        """The rows have landed: only now may a worker take them."""
        for name in names:
            if name in self._state:
                self._gauge(name)
                self._state[name].wake.set()

    def wake(self) -> None:
        """Every channel's worker looks at the outbox again (a shared state's lease round: a message of a target
        just taken over is this watchdog's to send now)."""
        for state in self._state.values():
            state.wake.set()

    def replay(self, events: Sequence[tuple[int, Event, bool]]) -> int:
        """Queue events recorded in the audit log after the outbox's mark (a kill between the two writes).
        Listeners are not called again: they saw the event when it happened."""
        return sum(len(self._enqueue(f"audit-{seq}", event, dry_run, seq)) for seq, event, dry_run in events)

    def send_direct(self, events: Sequence[Event]) -> None:
        """A page that cannot wait for the state file (it is the state file that fails): sent at once, retried
        in memory, never queued in the outbox and so not journaled; one message per channel, the first of
        `events` (one per target) that the channel takes."""
        for name, (cfg, _) in self._channels.items():
            event = next((ev for ev in events if accepts(cfg, ev)), None)
            if event is not None:
                task = self._tasks.spawn(self._direct(name, event), f"notify-direct:{name}")
                self._direct_tasks.add(task)
                task.add_done_callback(self._direct_tasks.discard)

    async def drain(self, timeout: float) -> None:
        """At shutdown: give due messages a chance; whatever is left stays in the outbox for the next start."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while loop.time() < deadline:
            if not any(self._due(name) for name in self._channels):
                return
            await asyncio.sleep(0.05)
        left = sum(self._counts(name)["pending"] for name in self._channels)
        log.warning("notifications_undelivered", count=left, kept="in the outbox for the next start")

    async def close(self) -> None:
        tasks = [*self._workers.values(), *self._direct_tasks]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        # A cancelled worker leaves its shielded mark running: let it land and write its audit record before
        # the state file's writer stops behind this (a full disk: the stop's own deadline, then it is logged).
        if self._settles:
            await asyncio.wait(list(self._settles), timeout=5)
        self._workers.clear()
        self._started = False
        for _, ch in self._channels.values():
            await ch.close()

    def status(self) -> dict[str, Any]:
        out = {}
        for name, st in self._state.items():
            if name not in self._channels:
                continue
            counts = self._counts(name)
            out[name] = {
                "type": st.type, "up": not st.failing, "pending": counts["pending"], "dead": counts["dead"],
                "sent": st.sent, "failed_attempts": st.failed,
                "last_sent_at": st.last_sent_at, "last_error": st.last_error, "last_error_at": st.last_error_at,
            }
        return out

    def _counts(self, name: str) -> dict[str, int]:
        """The outbox's counts, or the last ones read while the file cannot be read (status must answer)."""
        try:
            self._last_counts[name] = self._outbox.counts(name)
        except StoreError:
            pass
        return self._last_counts.get(name, {"pending": 0, "sent": 0, "dead": 0})

    def _gauge(self, name: str) -> None:
        self._metrics.notifications_pending.labels(name).set(self._counts(name)["pending"])

    def _due(self, name: str) -> bool:
        try:
            head = self._outbox.head(name)
        except StoreError:
            return False
        return head is not None and head.id not in self._settling and head.next_at <= self._clock.now().timestamp()

    async def _work(self, name: str) -> None:
        state = self._state[name]
        while True:
            try:
                head = self._outbox.head(name)
                if head is None or head.id in self._settling:  # nothing, or its new state not landed yet
                    state.wake.clear()
                    await state.wake.wait()
                elif (wait := head.next_at - self._clock.now().timestamp()) > 0:
                    await asyncio.sleep(min(wait, 60.0))
                elif await self._outbox.claim(head.id):  # a shared outbox: only one watchdog sends it
                    await self._attempt(name, head)
            except StoreError as exc:  # the file cannot be read just now: try again, never end the worker
                log.warning("notification_outbox_unreadable", channel=name, error=str(exc))
                await asyncio.sleep(1.0)

    async def _send(self, name: str, msg: Message) -> tuple[str | None, str | None, float | None, bool]:
        """One try: (thread ref, None, ...) when delivered, else (None, reason, retry_after, permanent)."""
        cfg, channel = self._channels[name]
        try:
            async with asyncio.timeout(cfg.timeout.total_seconds()):
                return await channel.send(msg), None, None, False
        except DeliveryFailed as exc:
            return None, exc.reason, exc.retry_after, exc.permanent
        except TimeoutError:
            return None, f"no answer within {cfg.timeout.total_seconds():g}s", None, False
        except Exception as exc:  # a channel's bug: retried like any failure, never fatal to the worker
            return None, f"unexpected {type(exc).__name__}", None, False  # the type only: messages can quote secrets

    def _failed(self, name: str, reason: str) -> None:
        state, now = self._state[name], self._clock.now()
        state.failed, state.last_error, state.last_error_at, state.failing = state.failed + 1, reason, now, True
        self._metrics.notifications.labels(name, "failed").inc()

    async def _attempt(self, name: str, p: Pending) -> None:
        cfg, ev = self._channels[name][0], p.event
        thread = self._outbox.thread(name, ev.incident) if ev.incident else None
        attempts = p.attempts + 1
        ref, reason, retry_after, permanent = await self._send(name, Message(p.id, name, ev, p.dry_run, thread))
        now = self._clock.now()
        if reason is None:
            # Until its mark has landed, head() would hand this message out again, to this worker or (after a
            # reload cancelled this one) to the next: it is held back meanwhile, and the bookkeeping is
            # shielded from that cancellation (the thread ref and the audit record must not be lost either).
            self._settling.add(p.id)
            await self._shielded(self._sent(name, p, ref, thread, attempts, now))
            return
        self._failed(name, reason)
        # Held back and shielded like a sent one: a reload's new worker must not take the row as it was
        # (due at once, attempts not counted) while its retry or dead mark is still on its way.
        self._settling.add(p.id)
        if permanent or attempts >= cfg.retry.attempts:
            await self._shielded(self._settle(name, p, self._outbox.mark_dead(p.id, attempts, now, reason)))
            why = "retrying cannot help" if permanent else f"after {attempts} attempts"
            self._settled(name, p, "dead", attempts, f"{reason} ({why})")
            return
        delay = backoff(cfg, attempts, retry_after, self._rng)
        await self._shielded(self._settle(name, p, self._outbox.mark_retry(p.id, attempts, now.timestamp() + delay,
                                                                           reason)))
        log.warning("notification_failed", channel=name, target=ev.target, incident=ev.incident, event_kind=ev.kind,
                    attempt=attempts, error=reason, retry_in=round(delay, 3))

    def _shielded(self, work: Coroutine[Any, Any, None]) -> Awaitable[None]:
        """`work` shielded from the worker's cancellation (a reload, the stop), and kept until it is done so
        that close() can wait for it."""
        task = asyncio.ensure_future(work)
        self._settles.add(task)
        task.add_done_callback(self._settles.discard)
        return asyncio.shield(task)

    async def _settle(self, name: str, p: Pending, mark: Awaitable[None]) -> None:
        try:
            await mark
        finally:
            self._settling.discard(p.id)
            state = self._state.get(name)
            if state is not None:
                state.wake.set()

    async def _sent(self, name: str, p: Pending, ref: str | None, thread: str | None, attempts: int,
                    now: datetime) -> None:
        state, ev = self._state[name], p.event
        try:
            await self._outbox.mark_sent(p.id, now)
            if ref and ev.incident and thread is None:
                await self._outbox.set_thread(name, ev.incident, ref)
        finally:
            self._settling.discard(p.id)
            state.wake.set()
        state.sent, state.last_sent_at, state.failing = state.sent + 1, now, False
        self._settled(name, p, "sent", attempts, "delivered")

    async def _direct(self, name: str, event: Event) -> None:
        cfg = self._channels[name][0]
        msg = Message(secrets.randbits(52), name, event, False, None)  # random: no outbox row to number it
        for attempts in range(1, cfg.retry.attempts + 1):
            ref, reason, retry_after, permanent = await self._send(name, msg)
            if reason is None:
                self._metrics.notifications.labels(name, "sent").inc()
                log.info("notification_sent_direct", channel=name, target=event.target, event_kind=event.kind,
                         attempts=attempts)
                return
            self._failed(name, reason)
            if permanent or attempts == cfg.retry.attempts:
                break
            await asyncio.sleep(backoff(cfg, attempts, retry_after, self._rng))
        self._metrics.notifications.labels(name, "dead").inc()
        log.error("notification_dead_direct", channel=name, target=event.target, event_kind=event.kind,
                  error=reason)

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
