"""Notification channels: where each event goes, and how hard to try.

Every channel filters by `min_severity`, and optionally by `targets` and
`events`; delivery goes through the durable outbox with the channel's `retry`
schedule (SPEC 3.2 keys; README "Notifications").
"""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path
from typing import Annotated, ClassVar, Literal, Union

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    field_validator,
    model_validator,
)

from watchdog.config.base import Backoffs
from watchdog.config.types import Backoff, HttpUrl, Timeout
from watchdog.events import EventKind, Severity

ChannelName = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DeliveryRetry(Backoffs):
    """Durable retries from the outbox: backoff doubles from `initial_backoff` up to `max_backoff`, with equal
    jitter (retrying.backoff); a 429's Retry-After is honoured when longer. After `attempts` tries the message is dead-lettered."""

    attempts: int = Field(12, ge=1, le=100)
    initial_backoff: Backoff = timedelta(seconds=2)
    max_backoff: Backoff = timedelta(minutes=2)


class _Channel(_Model):
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
        return self.name or str(getattr(self, "type"))


class SlackNotification(_Channel):
    """An incoming webhook (`webhook_url`), or a bot token with `channel` (threads one incident together)."""

    type: Literal["slack"]
    webhook_url: SecretStr | None = None
    token: SecretStr | None = None
    channel: str | None = None
    api_url: HttpUrl = "https://slack.com/api/"

    @model_validator(mode="after")
    def _one_way_in(self) -> "SlackNotification":
        if (self.webhook_url is None) == (self.token is None):
            raise ValueError("set exactly one of webhook_url or token")
        if self.token is not None and not self.channel:
            raise ValueError("a bot token needs `channel` (e.g. '#ops' or a channel id)")
        if self.webhook_url is not None and self.channel:
            raise ValueError("`channel` is for a bot token; an incoming webhook posts to its own channel")
        return self


class PagerDutyNotification(_Channel):
    """Events API v2: trigger with dedup_key = incident id, resolve when the incident is resolved."""

    type: Literal["pagerduty"]
    always_events: ClassVar[frozenset[str]] = frozenset({"resolved", "sight_restored", "resumed"})
    routing_key: SecretStr
    url: HttpUrl = "https://events.pagerduty.com/v2/enqueue"  # EU accounts: events.eu.pagerduty.com
    min_severity: Severity = "warning"


class EmailNotification(_Channel):
    type: Literal["email"]
    host: str = Field(min_length=1)
    port: int | None = Field(None, ge=1, le=65535)  # default by `security`: 587 starttls, 465 tls, 25 none
    security: Literal["starttls", "tls", "none"] = "starttls"
    ca_file: Path | None = None  # a CA bundle to trust for the server's certificate; default: the system store
    username: str | None = None
    password: SecretStr | None = None
    sender: str = Field(min_length=3, pattern=r"@")
    to: list[Annotated[str, Field(pattern=r"@")]] = Field(min_length=1)
    min_severity: Severity = "warning"

    @model_validator(mode="after")
    def _login_pair(self) -> "EmailNotification":
        if (self.username is None) != (self.password is None):
            raise ValueError("username and password go together")
        return self

    @property
    def smtp_port(self) -> int:
        return self.port or {"starttls": 587, "tls": 465, "none": 25}[self.security]


class WebhookNotification(_Channel):
    """A JSON POST of each event (README "Webhook payload"), optionally signed with HMAC-SHA256."""

    type: Literal["webhook"]
    url: SecretStr  # a URL often carries a token in its path or query
    secret: SecretStr | None = None
    headers: dict[str, SecretStr] = {}

    @field_validator("url")
    @classmethod
    def _http_url(cls, v: SecretStr) -> SecretStr:
        if not re.match(r"^https?://[^\s/]+", v.get_secret_value()):
            raise ValueError("must be an http:// or https:// URL")  # not echoed: it may hold a token
        return v


Notification = Annotated[
    Union[SlackNotification, PagerDutyNotification, EmailNotification, WebhookNotification],
    Field(discriminator="type"),
]
