"""Notification channels: where each event goes, and how hard to try.

Every channel filters by `min_severity`, and optionally by `targets` and
`events`; delivery goes through the durable outbox with the channel's `retry`
schedule (SPEC 3.2 keys; docs/configuration.md "notifications:"). These are the keys every
channel has; each kind's own model is in its module (watchdog.shared.kinds.CHANNELS).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, ClassVar

from pydantic import BaseModel, ConfigDict, Field

from watchdog.config.base import Backoffs
from watchdog.config.types import Backoff, Timeout
from watchdog.shared.events import EventKind, Severity

ChannelName = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DeliveryRetry(Backoffs):
    """Durable retries from the outbox: backoff doubles from `initial_backoff` up to `max_backoff`, with equal
    jitter (retrying.backoff); a 429's Retry-After is honoured when longer. After `attempts` tries the message is dead-lettered."""

    attempts: int = Field(12, ge=1, le=100)
    initial_backoff: Backoff = timedelta(seconds=2)
    max_backoff: Backoff = timedelta(minutes=2)


class Notification(_Model):
    """The keys every channel takes; a kind's model adds `type: Literal[<its type>]` and its own keys."""

    type: str
    name: ChannelName | None = None  # defaults to the type; names must be unique
    min_severity: Severity = "info"
    targets: list[str] | None = None  # None: every target
    events: list[EventKind] | None = None  # None: every event
    timeout: Timeout = timedelta(seconds=10)
    retry: DeliveryRetry = DeliveryRetry()
    # Events this kind of channel needs whatever the filters say (a PagerDuty alert must be resolved).
    always_events: ClassVar[frozenset[str]] = frozenset()

    @property
    def channel_name(self) -> str:
        return self.name or self.type
