"""What every source's config has (docs/configuration.md "sources:"); each kind's own model is in its module
(watchdog.shared.kinds).

Every source polls at its own `interval`. `blind_after`: after failing for that
long, the targets whose rules read it are reported blind and a human is paged
(default: three intervals, at least 5 minutes).
"""

from __future__ import annotations

from datetime import timedelta

from watchdog.config.base import Model, Name, RetrySchedule
from watchdog.config.types import BlindAfter, Interval, Timeout


class Source(Model):
    """The keys every kind takes; a kind's model adds `type: Literal[<its type>]` and its own keys."""

    type: str
    name: Name
    interval: Interval = timedelta(seconds=60)
    blind_after: BlindAfter | None = None
    timeout: Timeout = timedelta(seconds=10)
    retry: RetrySchedule = RetrySchedule()

    @property
    def blind_limit(self) -> timedelta:
        return self.blind_after or max(3 * self.interval, timedelta(minutes=5))
