"""What a notification channel provides, and the wording every channel shares.

A channel sends one `Message` (an event taken from the durable outbox) or
raises `DeliveryFailed`; the outbox worker owns retries, backoff and
dead-lettering, so a channel never retries by itself.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from email.utils import parsedate_to_datetime
from typing import Any, Protocol, TypeVar

import aiohttp

from watchdog.state.codec import jsonable
from watchdog.config.notifications import Notification
from watchdog.shared.events import Event
from watchdog.shared.kinds import CHANNELS, Descriptor, find
from watchdog.core.rules import format_value

SEVERITY_RANK = {"info": 0, "warning": 1, "critical": 2}
PAYLOAD_SCHEMA = "rollback-watchdog.event/v1"


@dataclass(frozen=True)
class Message:
    id: int  # the outbox row: a delivery id a receiver can deduplicate on
    channel: str
    event: Event
    dry_run: bool
    # What this channel returned for the first delivered message of the same incident (a Slack ts, an email
    # Message-ID): later messages join that thread. None for the first one, or without an incident.
    thread: str | None = None


class DeliveryFailed(Exception):
    """`permanent`: retrying cannot help (e.g. 400, 401, 404): dead-letter now. `retry_after`: the receiver's
    own wait in seconds (429 Retry-After), honoured when longer than the backoff."""

    def __init__(self, reason: str, *, retry_after: float | None = None, permanent: bool = False):
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after
        self.permanent = permanent


class Channel(Protocol):
    name: str

    async def send(self, msg: Message) -> str | None:
        """Deliver or raise DeliveryFailed. Returns a thread reference for later messages of the incident."""
        ...

    async def close(self) -> None: ...


N = TypeVar("N", bound=Notification)


@dataclass(frozen=True)
class ChannelKind(Descriptor[N]):
    """A channel kind's descriptor (its module's `KIND`, registered in watchdog.shared.kinds.CHANNELS): its config
    model, and how a configured channel is built on the runtime's HTTP session."""

    build: Callable[[N, aiohttp.ClientSession], Channel]


def channel_kind(of: Notification | str) -> ChannelKind[Any]:
    kind: ChannelKind[Any] = find(CHANNELS, of, ChannelKind)
    return kind


class Posting:
    """A channel that posts over the runtime's shared HTTP session (which the runtime owns and closes)."""

    def __init__(self, name: str, timeout: timedelta, session: aiohttp.ClientSession):
        self.name = name
        self._session = session
        self._timeout = aiohttp.ClientTimeout(total=timeout.total_seconds())

    async def close(self) -> None:
        return None


def retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """A Retry-After header (delta-seconds or an HTTP date) in seconds; None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, (when - (now or datetime.now(timezone.utc))).total_seconds())


def check_status(status: int, headers: Any, what: str) -> None:
    """Raise DeliveryFailed for a non-2xx answer: 429 with its Retry-After, 408 and 5xx retryable, other 4xx
    permanent. Only the status goes in the reason: a body can echo a URL or token."""
    if 200 <= status < 300:
        return
    if status == 429:
        raise DeliveryFailed(f"{what} answered HTTP 429 (rate limited)", retry_after=retry_after(headers.get("Retry-After")))
    if status == 408 or status >= 500:
        raise DeliveryFailed(f"{what} answered HTTP {status}")
    raise DeliveryFailed(f"{what} answered HTTP {status}", permanent=True)


async def post(session: aiohttp.ClientSession, url: Any, what: str, timeout: aiohttp.ClientTimeout,
               **kw: Any) -> None:
    """One POST that raises DeliveryFailed unless answered 2xx. Redirects are not followed: the request
    carries credentials meant for this URL only. Errors name the exception type only: aiohttp's messages
    quote the URL, which can hold a token."""
    try:
        async with session.post(url, timeout=timeout, allow_redirects=False, **kw) as resp:
            status, headers = resp.status, resp.headers
            await resp.read()  # drained, so the connection can be reused
    except aiohttp.InvalidURL:
        raise DeliveryFailed(f"{what} URL is not a valid http(s) URL", permanent=True) from None
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise DeliveryFailed(f"{what} request failed: {type(exc).__name__}") from None
    check_status(status, headers, what)


def title(event: Event, dry_run: bool) -> str:
    mark = "[DRY RUN] " if dry_run else ""
    return f"{mark}{event.kind.replace('_', ' ')}: {event.target}" + (f" level {event.level}" if event.level else "")


def render_text(event: Event, dry_run: bool) -> str:
    """One plain line: target, incident, level, why and what happens next."""
    mark = "[DRY RUN] " if dry_run else ""
    inc = f" incident {event.incident}" if event.incident else ""
    lvl = f" level {event.level}" if event.level else ""
    return f"{mark}{event.kind.replace('_', ' ')}: {event.target}{inc}{lvl}. Why: {event.why}. Next: {event.next}."


def trigger_lines(event: Event) -> list[str]:
    """For an opened incident: each triggering rule with its value, threshold and datapoint time."""
    trigger = event.details.get("trigger") if event.details else None
    if not isinstance(trigger, dict):
        return []
    lines = []
    for rule in sorted(trigger):
        t = trigger[rule] if isinstance(trigger[rule], dict) else {}
        at = t.get("at")
        at_text = f" at {at:%H:%M:%SZ}" if isinstance(at, datetime) else (f" at {at}" if at else "")
        lines.append(f"{rule}: value {format_value(t.get('value'), 'no value')}, threshold {t.get('threshold', '?')}{at_text}")
    return lines


def payload(msg: Message) -> dict[str, Any]:
    """The webhook body (docs/configuration.md "Webhook payload"); stable, versioned by `schema`."""
    ev = msg.event
    return {
        "schema": PAYLOAD_SCHEMA,
        "delivery_id": msg.id,
        "event": ev.kind,
        "severity": ev.severity,
        "target": ev.target,
        "incident": ev.incident,
        "level": ev.level,
        "at": ev.at.isoformat(),
        "why": ev.why,
        "next": ev.next,
        "dry_run": msg.dry_run,
        "details": jsonable(dict(ev.details or {})),
    }

