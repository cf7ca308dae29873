"""Announcing events without ever holding up a rollback.

`publish` only queues; a worker delivers, each channel under its own timeout.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

import structlog

from watchdog.config.models import SlackNotification
from watchdog.escalation import Event
from watchdog.metrics import Metrics
from watchdog.notify.base import SEVERITY_RANK, Channel, render_text
from watchdog.notify.slack import SlackWebhook

log = structlog.get_logger("watchdog.notify")

REGISTRY: dict[str, Callable[..., Channel]] = {"slack": SlackWebhook}


def build_channels(cfgs: Sequence[SlackNotification]) -> list[Channel]:
    return [REGISTRY[c.type](c) for c in cfgs]


class Notifier:
    def __init__(self, channels: Sequence[Channel], metrics: Metrics, queue_size: int = 1000):
        self._channels = list(channels)
        self._metrics = metrics
        self._queue: asyncio.Queue[tuple[Event, bool]] = asyncio.Queue(maxsize=queue_size)
        self._listeners: list[Callable[[Event, bool], None]] = []

    def set_channels(self, channels: Sequence[Channel]) -> None:
        """On reload: queued events go to the new channels."""
        self._channels = list(channels)

    def listen(self, fn: Callable[[Event, bool], None]) -> None:
        """In-process listeners (the demo's timeline) are called synchronously."""
        self._listeners.append(fn)

    def publish(self, event: Event, dry_run: bool = False) -> None:
        for fn in self._listeners:
            try:
                fn(event, dry_run)
            except Exception as exc:  # a listener's bug must not stop the caller (the executor) nor the channels
                log.error("notification_listener_failed", target=event.target, kind=event.kind, error=type(exc).__name__)
        if not self._channels:
            return
        try:
            self._queue.put_nowait((event, dry_run))
        except asyncio.QueueFull:
            log.error("notification_dropped", target=event.target, incident=event.incident, kind=event.kind)
            for ch in self._channels:
                self._metrics.notifications.labels(ch.name, "dropped").inc()

    async def run(self) -> None:
        while True:
            event, dry_run = await self._queue.get()
            try:
                await asyncio.gather(*(self._deliver(ch, event, dry_run) for ch in self._channels))
            finally:
                self._queue.task_done()

    async def drain(self, timeout: float) -> None:
        try:
            await asyncio.wait_for(self._queue.join(), timeout)
        except asyncio.TimeoutError:
            log.warning("notifications_undelivered", count=self._queue.qsize())

    async def close(self) -> None:
        for ch in self._channels:
            await ch.close()

    async def _deliver(self, ch: Channel, event: Event, dry_run: bool) -> None:
        if SEVERITY_RANK[event.severity] < SEVERITY_RANK[ch.min_severity]:
            return
        try:
            await asyncio.wait_for(ch.send(event, dry_run), ch.timeout)
        except Exception as exc:  # a broken channel must never stop the others
            self._metrics.notifications.labels(ch.name, "failed").inc()
            # Library errors can quote the URL, and a webhook URL is a secret: log the type only.
            reason = "timeout" if isinstance(exc, asyncio.TimeoutError) else (
                str(exc)[:200] if type(exc) is RuntimeError else type(exc).__name__
            )
            log.warning("notification_failed", channel=ch.name, target=event.target, incident=event.incident, error=reason)
        else:
            self._metrics.notifications.labels(ch.name, "sent").inc()


__all__ = ["Channel", "Notifier", "build_channels", "render_text"]
