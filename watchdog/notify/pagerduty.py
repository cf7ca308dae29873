"""PagerDuty through the Events API v2.

One PagerDuty alert per incident: every event of an incident triggers with the
incident id as `dedup_key` (PagerDuty folds repeats into the open alert), and
`resolved` resolves it.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import aiohttp
from pydantic import SecretStr

from watchdog.config.notifications import Notification
from watchdog.config.types import HttpUrl
from watchdog.shared.events import Event, Severity
from watchdog.notify.base import ChannelKind, Message, Posting, post, render_text, trigger_lines


class PagerDutyNotification(Notification):
    """Events API v2: trigger with dedup_key = incident id, resolve when the incident is resolved."""

    type: Literal["pagerduty"]
    always_events: ClassVar[frozenset[str]] = frozenset({"resolved", "sight_restored", "resumed"})
    routing_key: SecretStr
    url: HttpUrl = "https://events.pagerduty.com/v2/enqueue"  # EU accounts: events.eu.pagerduty.com
    min_severity: Severity = "warning"

SOURCE = "rollback-watchdog"
SUMMARY_LIMIT = 1024  # PagerDuty rejects a longer summary with 400
# PagerDuty also knows "error"; our three levels map onto its names one to one.
SEVERITY = {"info": "info", "warning": "warning", "critical": "critical"}


# Episodes that are not an incident have their own alert, resolved by the event that ends them: a
# blind spell by `sight_restored`, a "would run" while paused by `resumed`. Without this the alert
# stays open and the next episode is swallowed by it.
EPISODE = {"blind": "blind", "sight_restored": "blind", "resumed": "would_run"}
RESOLVES = ("resolved", "sight_restored", "resumed")


def dedup_key(event: Event) -> str:
    if event.kind in EPISODE:
        return f"{SOURCE}/{event.target}/{EPISODE[event.kind]}"
    return event.incident or f"{SOURCE}/{event.target}/{event.kind}"


def pd_event(routing_key: str, msg: Message) -> dict[str, Any]:
    """The Events API v2 body for one message."""
    ev = msg.event
    if ev.kind in RESOLVES:
        return {"routing_key": routing_key, "event_action": "resolve", "dedup_key": dedup_key(ev)}
    details: dict[str, Any] = {
        "incident": ev.incident,
        "level": ev.level,
        "why": ev.why,
        "next": ev.next,
        "dry_run": msg.dry_run,
    }
    if lines := trigger_lines(ev):
        details["trigger"] = lines
    return {
        "routing_key": routing_key,
        "event_action": "trigger",
        "dedup_key": dedup_key(ev),
        "payload": {
            "summary": render_text(ev, msg.dry_run)[:SUMMARY_LIMIT],
            "source": SOURCE,
            "severity": SEVERITY.get(ev.severity, "critical"),
            "component": ev.target,
            "group": SOURCE,
            "class": ev.kind,
            "timestamp": ev.at.isoformat(),
            "custom_details": details,
        },
        "client": SOURCE,
    }


class PagerDuty(Posting):
    def __init__(self, cfg: PagerDutyNotification, session: aiohttp.ClientSession):
        super().__init__(cfg.channel_name, cfg.timeout, session)
        self._cfg = cfg

    async def send(self, msg: Message) -> None:
        body = pd_event(self._cfg.routing_key.get_secret_value(), msg)
        await post(self._session, self._cfg.url, "PagerDuty", self._timeout, json=body)


KIND = ChannelKind(type="pagerduty", config=PagerDutyNotification, build=PagerDuty)
