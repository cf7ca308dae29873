"""Notification channels (one module per kind, a registry keyed by the config `type`) and the notifier."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import aiohttp

from watchdog.config.notifications import Notification
from watchdog.notify.base import Channel, DeliveryFailed, Message, render_text
from watchdog.notify.email import Email
from watchdog.notify.notifier import Notifier
from watchdog.notify.pagerduty import PagerDuty
from watchdog.notify.slack import build_slack
from watchdog.notify.webhook import Webhook

REGISTRY: dict[str, Callable[..., Channel]] = {
    "slack": build_slack,
    "pagerduty": PagerDuty,
    "email": Email,
    "webhook": Webhook,
}


def build_channels(cfgs: Sequence[Notification], session: aiohttp.ClientSession) -> list[tuple[Notification, Channel]]:
    return [(c, REGISTRY[c.type](c, session)) for c in cfgs]


__all__ = ["Channel", "DeliveryFailed", "Message", "Notifier", "build_channels", "render_text"]
