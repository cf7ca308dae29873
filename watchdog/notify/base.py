"""What a notification channel provides."""

from __future__ import annotations

from typing import Protocol

from watchdog.escalation import Event

SEVERITY_RANK = {"info": 0, "warning": 1, "critical": 2}


class Channel(Protocol):
    name: str
    min_severity: str
    timeout: float

    async def send(self, event: Event, dry_run: bool) -> None:
        """Deliver one event or raise."""
        ...

    async def close(self) -> None: ...


def render_text(event: Event, dry_run: bool) -> str:
    mark = "[DRY RUN] " if dry_run else ""
    inc = f" incident {event.incident}" if event.incident else ""
    lvl = f" level {event.level}" if event.level else ""
    return f"{mark}{event.kind.replace('_', ' ')}: {event.target}{inc}{lvl}. Why: {event.why}. Next: {event.next}."
