"""The alerts Alertmanager pushes (POST /api/v1/alertmanager, through the control API), held for the
alertmanager sources to read. The runtime has one; it outlives a reload."""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Mapping
from datetime import datetime, timedelta, timezone
from typing import Any

from watchdog.shared.clock import Clock

# Go's zero time.Time: Alertmanager's "no end" (it blanks endsAt of every firing alert).
_NO_END = datetime(1, 1, 1, tzinfo=timezone.utc)
# fromisoformat alone also takes "20240101T1200" and zone-less times; webhooks are strict RFC 3339.
_RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$")


def _time(value: Any, where: str) -> datetime:
    if not isinstance(value, str) or not _RFC3339.match(value):
        raise ValueError(f"{where}: expected an RFC 3339 time, got {value!r:.60}")
    try:
        # Go sends up to 9 fractional digits; Python keeps 6.
        return datetime.fromisoformat(value.upper()).astimezone(timezone.utc)
    except (ValueError, OverflowError):
        raise ValueError(f"{where}: not a valid time: {value!r:.60}") from None


def _alert(raw: Any, where: str) -> tuple[str, str, dict[str, str], datetime | None]:
    """(key, status, labels, ends_at) of one alert, or ValueError naming the field."""
    if not isinstance(raw, dict):
        raise ValueError(f"{where}: expected an object")
    status = raw.get("status")
    if status not in ("firing", "resolved"):
        raise ValueError(f"{where}.status: expected 'firing' or 'resolved', got {status!r:.60}")
    labels = raw.get("labels")
    if not isinstance(labels, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in labels.items()):
        raise ValueError(f"{where}.labels: expected an object of string values")
    _time(raw.get("startsAt"), f"{where}.startsAt")
    ends = _time(raw.get("endsAt"), f"{where}.endsAt")
    fingerprint = raw.get("fingerprint")
    if fingerprint is not None and not isinstance(fingerprint, str):
        raise ValueError(f"{where}.fingerprint: expected a string")
    # Alertmanager's fingerprint is a hash of the label set, so both keys name the same alert.
    key = fingerprint or "\x00".join(f"{k}={v}" for k, v in sorted(labels.items()))
    return key, status, dict(labels), None if ends == _NO_END else ends


class AlertStore:
    """The firing alerts Alertmanager told us about, shared by every alertmanager source."""

    def __init__(self, clock: Clock, limit: int = 10_000):
        self._clock = clock
        self._limit = limit
        # key -> (labels, ends_at, received_at); order = last received, so the stalest go first.
        self._alerts: OrderedDict[str, tuple[dict[str, str], datetime | None, datetime]] = OrderedDict()
        self.last_received: datetime | None = None

    def __len__(self) -> int:
        return len(self._alerts)

    def receive(self, payload: Any) -> int:
        """Take one webhook payload (version 4); the number of alerts in it, or ValueError."""
        if not isinstance(payload, dict):
            raise ValueError("payload: expected a JSON object")
        if payload.get("version") != "4":
            raise ValueError(f"version: expected \"4\", got {payload.get('version')!r:.60}")
        if payload.get("status") not in ("firing", "resolved"):
            raise ValueError(f"status: expected 'firing' or 'resolved', got {payload.get('status')!r:.60}")
        raw = payload.get("alerts")
        if not isinstance(raw, list):
            raise ValueError("alerts: expected a list")
        # All checked before any is applied: a rejected payload changes nothing.
        alerts = [_alert(a, f"alerts[{i}]") for i, a in enumerate(raw)]
        now = self._clock.now()
        for key, status, labels, ends in alerts:
            self._alerts.pop(key, None)
            if status == "firing":
                self._alerts[key] = (labels, ends, now)
        if len(self._alerts) > self._limit:
            self._shrink()
        self.last_received = self._clock.now()
        return len(alerts)

    def _shrink(self) -> None:
        now = self._clock.now()
        for key in [k for k, (_, ends, _at) in self._alerts.items() if ends is not None and ends <= now]:
            del self._alerts[key]
        while len(self._alerts) > self._limit:
            self._alerts.popitem(last=False)

    def firing(self, matchers: Mapping[str, str], now: datetime) -> list[dict[str, str]]:
        """Label sets of the alerts firing at `now` that carry every matcher exactly."""
        return [dict(labels) for labels, _, _ in self._matching(matchers, now)]

    def _matching(self, matchers: Mapping[str, str], now: datetime) -> list[tuple[dict[str, str], datetime | None, datetime]]:
        return [
            (labels, ends, at)
            for labels, ends, at in self._alerts.values()
            if (ends is None or ends > now) and all(labels.get(k) == v for k, v in matchers.items())
        ]

    def reading(self, matchers: Mapping[str, str], now: datetime, ttl: timedelta) -> bool | None:
        """True while a matching alert fires; None when there is no evidence either way: nothing received
        since this process started (the store is not kept across restarts), or the only matching alerts
        were not re-sent within `ttl` (Alertmanager repeats firing alerts; a lost `resolved` must not
        keep a rollback going forever)."""
        if self.last_received is None:
            return None
        matching = self._matching(matchers, now)
        if any(at >= now - ttl for _, _, at in matching):
            return True
        return None if matching else False
