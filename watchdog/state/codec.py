"""What the state file keeps, as typed data: one encoder and one decoder per stored kind.

Hand-written restore code drifted from what was saved (a trigger's time came back
as a string and /status answered 500 after a restart). Here pydantic validates the
stored JSON back into the very dataclasses the machine uses, so
`decode_incident(encode_incident(x)) == x` for every incident (a property test
holds it to that).
"""

from __future__ import annotations

import dataclasses
from collections import deque
from collections.abc import Mapping
from datetime import datetime, timedelta
from enum import Enum
from typing import Any

from pydantic import TypeAdapter

from watchdog.core.escalation import Incident
from watchdog.shared.events import Event
from watchdog.core.pause import Pause

_INCIDENT: TypeAdapter[Incident] = TypeAdapter(Incident)
_PAUSE: TypeAdapter[Pause] = TypeAdapter(Pause)
_EVENT: TypeAdapter[Event] = TypeAdapter(Event)


def encode_incident(inc: Incident) -> dict[str, Any]:
    data: dict[str, Any] = jsonable(inc)
    return data


def decode_incident(data: Any) -> Incident:
    """ValidationError when the stored data is not an incident."""
    return _INCIDENT.validate_python(data)


def encode_pause(pause: Pause) -> dict[str, Any]:
    out: dict[str, Any] = jsonable(pause)
    return out


def decode_pause(data: Any) -> Pause:
    return _PAUSE.validate_python(data)


def encode_event(ev: Event) -> dict[str, Any]:
    out: dict[str, Any] = jsonable(ev)
    return out


def decode_event(data: Any) -> Event:
    """ValidationError when the stored data is not an event (an unknown kind included)."""
    return _EVENT.validate_python(data)


def event_from_audit(target: str, incident: str | None, level: int, at: datetime, data: Mapping[str, Any]) -> Event:
    """The event an audit record keeps (journal.event_data holds its own fields; the record the rest)."""
    return decode_event({"kind": data.get("event"), "severity": data.get("severity"), "target": target,
                         "incident": incident, "level": level, "at": at, "why": data.get("why", ""),
                         "next": data.get("next", ""), "details": data.get("details") or {}})


def jsonable(value: Any) -> Any:
    """Dataclasses, datetimes (ISO 8601), enums, sets (sorted) and timedeltas (seconds) as plain JSON data."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Enum):
        return jsonable(value.value)
    if isinstance(value, str):
        return value if value.isascii() else utf8_safe(value)
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, dict):
        return {utf8_safe(str(k)): jsonable(v) for k, v in value.items()}
    if isinstance(value, (set, frozenset)):
        return sorted((jsonable(v) for v in value), key=str)
    if isinstance(value, (list, tuple, deque)):
        return [jsonable(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


def utf8_safe(text: str) -> str:
    """`text`, with what UTF-8 cannot hold (a lone surrogate, as JSON's "\\ud83d" decodes to) written out as
    its escape. Outside text (an error message, a config value) may hold one, and the state file must take
    every record: one that fails to encode on the writer thread would leave a hole in the audit chain."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text
