"""What the watchdog announces: the one definition of an event, its kinds and its severities.

Only the escalation machine (escalation.py) makes events; the notifier, the outbox and the store
carry them. A leaf module, so that the config (`events:` filters) and the core share it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, get_args

Severity = Literal["info", "warning", "critical"]

# Every event the watchdog announces; a channel's `events:` filter names these.
EventKind = Literal[
    "incident_opened", "level_started", "level_succeeded", "level_failed", "verification_failed", "mitigated",
    "exhausted", "blind", "sight_restored", "realarmed", "would_run", "paused", "resumed", "resolved", "recovered",
    "outcome_unknown", "recovery_failed", "state_unwritable", "state_writable",
    "test",
]
EVENT_KINDS: tuple[EventKind, ...] = get_args(EventKind)
SEVERITIES: tuple[Severity, ...] = get_args(Severity)


@dataclass(frozen=True)
class Event:
    kind: EventKind
    severity: Severity
    target: str
    incident: str | None
    level: int
    at: datetime
    why: str
    next: str
    details: Mapping[str, Any] = field(default_factory=dict)
