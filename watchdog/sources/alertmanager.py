"""Alerts pushed by Alertmanager's webhook receiver (POST /api/v1/alertmanager).

The control API hands each payload to the one `AlertStore`; every alertmanager
source reads that store at its own interval. A rule is in alarm while an alert
whose labels contain all of the rule's `alert` matchers is firing. Nothing
received yet simply means nothing fires: a push source cannot tell silence from
calm, so it never reports a source error.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Literal

from watchdog.config.base import Model
from watchdog.config.checks import Problem
from watchdog.config.models import Rule
from watchdog.config.sources import Source as SourceConfig
from watchdog.config.types import AlertTtl, Interval
from watchdog.core.rules import Datapoint
from watchdog.sources.alertstore import AlertStore
from watchdog.sources.base import Query, Readings
from watchdog.sources.kind import SourceDeps, SourceKind, Validating, Verdict

__all__ = ["KIND", "AlertStore", "Alertmanager", "AlertmanagerReads", "AlertmanagerSource"]


class AlertmanagerSource(SourceConfig):
    """Alerts pushed by Alertmanager to POST /api/v1/alertmanager; `interval` is how often they are judged."""

    type: Literal["alertmanager"]
    interval: Interval = timedelta(seconds=15)
    # A firing alert not re-sent for this long is no evidence (Alertmanager repeats firing alerts every
    # repeat_interval, 4h by default: keep this above yours).
    alert_ttl: AlertTtl = timedelta(hours=4, minutes=30)


class AlertmanagerReads(Model):
    alert: dict[str, str]  # label matchers; in alarm while a matching alert fires

class Alertmanager:
    sampled = True

    def __init__(self, cfg: AlertmanagerSource, queries: Sequence[Query], alerts: AlertStore):
        self.name = cfg.name
        self.interval = cfg.interval
        self._alerts = alerts
        self._queries = list(queries)
        self._ttl = cfg.alert_ttl
        self._readings = Readings(self._queries, cfg.interval)
        self._matchers = {q.key: q.rule.reads(AlertmanagerReads).alert for q in self._queries}

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None  # the store belongs to the app and outlives a reload

    async def poll(self, now: datetime) -> Mapping[str, Sequence[Datapoint]]:
        for key, matchers in self._matchers.items():
            value = self._alerts.reading(matchers, now, self._ttl)
            if value is not None:
                self._readings.add(key, now, value)
        return self._readings.all()


def _build(cfg: AlertmanagerSource, queries: Sequence[Query], deps: SourceDeps) -> Alertmanager:
    return Alertmanager(cfg, queries, deps.alerts)


def _matchers(at: tuple[str | int, ...], rule: Rule, source: AlertmanagerSource) -> list[Problem]:
    if rule.reads(AlertmanagerReads).alert == {}:
        # No matcher would match every alert, and any unrelated alert would roll this target back.
        return [(at + ("alert",), "at least one label matcher, e.g. {alertname: HighErrorRate}")]
    return []


def _token(cfg: AlertmanagerSource, validating: Validating) -> Verdict:
    if validating.api_token:
        return True, "pushes go to POST /api/v1/alertmanager with the API token"
    return False, "watchdog.api_token is not set: Alertmanager's pushes would be refused (403)"


KIND = SourceKind(type="alertmanager", config=AlertmanagerSource, reads=AlertmanagerReads, requires=("alert",),
                  build=_build, sampled=True, pushed=True, alarms=True, check=_matchers, validation=_token)
