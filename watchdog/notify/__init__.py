"""Notification channels (one module per kind, each with one descriptor, `KIND`, registered by `type` in
watchdog.shared.kinds.CHANNELS) and the notifier."""

from __future__ import annotations

from collections.abc import Sequence

import aiohttp

from watchdog.config.notifications import Notification
from watchdog.notify.base import Channel, ChannelKind, DeliveryFailed, Message, channel_kind, render_text
from watchdog.notify.notifier import Notifier


def build_channels(cfgs: Sequence[Notification], session: aiohttp.ClientSession) -> list[tuple[Notification, Channel]]:
    out: list[tuple[Notification, Channel]] = []
    for c in cfgs:
        kind = channel_kind(c)
        out.append((c, kind.build(kind.of(c), session)))
    return out


__all__ = ["Channel", "ChannelKind", "DeliveryFailed", "Message", "Notifier", "build_channels", "channel_kind",
           "render_text"]
