"""What every source kind provides, and the errors it raises."""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Protocol

import aiohttp
from pydantic import SecretStr

from watchdog.config.base import RetrySchedule
from watchdog.config.sources import Source as SourceConfig
from watchdog.config.types import HttpUrl, Timeout
from watchdog.support.retrying import Sleep
from watchdog.core.rules import Datapoint, align, evaluation_range
from watchdog.core.signals import Query

__all__ = ["HttpSampled", "HttpSourceConfig", "Query", "Readings", "Source", "SourceError"]


class SourceError(Exception):
    """A poll failed. Its rules become insufficient_data; this is never a breach."""


class Source(Protocol):
    name: str
    interval: timedelta
    # True when each reading is complete on arrival (no still-filling bucket).
    sampled: bool

    async def start(self) -> None: ...

    async def poll(self, now: datetime) -> Mapping[str, Sequence[Datapoint]]:
        """Datapoints per query key, or SourceError."""
        ...

    async def close(self) -> None: ...


class HttpSourceConfig(SourceConfig):
    """The keys of a source read over HTTP (its kind adds its `type`)."""

    url: HttpUrl
    headers: dict[str, SecretStr] = {}
    timeout: Timeout = timedelta(seconds=5)
    retry: RetrySchedule = RetrySchedule(attempts=2)


class HttpSampled:
    """What the sources read over HTTP share: the runtime's HTTP session (opened and closed by the runtime,
    so a source has nothing of its own to start or close) and the readings the rules' windows come from."""

    sampled = True

    def __init__(self, cfg: HttpSourceConfig, queries: Sequence[Query], session: aiohttp.ClientSession,
                 sleep: Sleep | None = None):
        self.name = cfg.name
        self.interval = cfg.interval
        self._queries = list(queries)
        self._session = session
        self._sleep = sleep
        self._readings = Readings(self._queries)

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None


class Readings:
    """The last few readings per query of a sampled source: the rules' windows are built from them.

    One reading per `interval` bucket: a second one in the same bucket (an extra poll, e.g. on an
    Alertmanager push) replaces the first, so a burst never pushes the window's history out.
    """

    def __init__(self, queries: Sequence[Query], interval: timedelta | None = None):
        keep = evaluation_range(max((q.rule.evaluation_periods for q in queries), default=1)) + 2
        self._points: dict[str, deque[Datapoint]] = {q.key: deque(maxlen=keep) for q in queries}
        self._interval = interval

    def add(self, key: str, at: datetime, value: float | bool) -> None:
        points = self._points[key]
        if points and self._interval and align(points[-1][0], self._interval) == align(at, self._interval):
            points[-1] = (at, value)
        else:
            points.append((at, value))

    def all(self) -> dict[str, list[Datapoint]]:
        return {key: list(points) for key, points in self._points.items()}
