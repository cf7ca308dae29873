"""When each source is polled and which of its queries a poll reads: one schedule for the live daemon and the
replay. Pure: times in, times out.

A poll's tick is an input of the poll (Runtime.poll(name, due)); this module is the only place that says
which ticks there are. The daemon's APScheduler trigger fires at them (app.py), the replay walks them over
its range (replay/engine.py), and `run --once` has one tick of its own.

Every source is polled once when polling starts (the start, a reload). After that:
- a source without a period (http_json, prometheus, ...) every `interval`;
- a source whose rules read buckets of a period (cloudwatch) on the epoch's grid of its rules' periods,
  `settle` after each boundary: a bucket is read once, when it has closed and CloudWatch has had `settle`
  to ingest it. Its step is the greatest common divisor of the periods, so every query's own ticks are
  among the source's; a poll reads only the queries due at it (`due`).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
ZERO = timedelta(0)


@dataclass(frozen=True)
class Pace:
    """What the schedule reads of a source: its `interval`, and for a source read on its rules' periods the
    step of its grid (the periods' greatest common divisor) and its `settle`."""

    interval: timedelta
    step: timedelta | None = None
    settle: timedelta = ZERO

    @classmethod
    def aligned(cls, interval: timedelta, periods: list[timedelta], settle: timedelta) -> Pace:
        """A source read on `periods` (none: it has no rule yet, and is polled every `interval`)."""
        if not periods:
            return cls(interval)
        micro = math.gcd(*(p // timedelta(microseconds=1) for p in periods))
        return cls(interval, timedelta(microseconds=micro), settle)

    @property
    def gap(self) -> timedelta:
        """The longest time between two ticks after the first: what /healthz allows a source between polls."""
        return self.step if self.step is not None else self.interval


def latest(every: timedelta, settle: timedelta, at: datetime) -> datetime:
    """The newest tick of the grid `every` apart, `settle` after each boundary, at or before `at`."""
    return at - (at - EPOCH - settle) % every


def first_due(pace: Pace, start: datetime) -> datetime:
    """The first tick of a source whose polling starts at `start`: at once."""
    return start


def next_due(pace: Pace, after: datetime) -> datetime:
    """The tick that follows the tick `after`."""
    if pace.step is None:
        return after + pace.interval
    return latest(pace.step, pace.settle, after) + pace.step


def ticks(pace: Pace, start: datetime, end: datetime) -> Iterator[datetime]:
    """Every tick from `start` to `end` (both included), made as it is consumed: a 100 ms interval over two
    weeks is 12 M of them."""
    due = first_due(pace, start)
    while due <= end:
        yield due
        due = next_due(pace, due)


def count(pace: Pace, start: datetime, end: datetime) -> int:
    """How many ticks `ticks` gives, without making them."""
    due = first_due(pace, start)
    if due > end:
        return 0
    if pace.step is None:
        return (end - due) // pace.interval + 1
    # The first, then the grid's ticks after it up to `end`.
    return 1 + (latest(pace.step, pace.settle, end) - latest(pace.step, pace.settle, due)) // pace.step


def catch_up(pace: Pace, previous: datetime | None, start: datetime, now: datetime) -> datetime:
    """The tick a run of the live scheduler stands for: the one after `previous` (the first of all when
    there is none) or, when runs were missed and coalesced into this one (a stalled loop), the newest tick
    that has come by `now`. Always later than `previous`, so no tick is polled twice."""
    due = first_due(pace, start) if previous is None else next_due(pace, previous)
    if next_due(pace, due) > now:
        return due
    if pace.step is None:
        return due + (now - due) // pace.interval * pace.interval
    return latest(pace.step, pace.settle, now)


# --- which queries a poll reads --------------------------------------------------------------------

def due(every: timedelta, settle: timedelta, last_read: datetime | None, now: datetime) -> bool:
    """Whether a query read on the grid `every` apart (its period, or its `read_every`) is read at `now`:
    never read yet (polling started, or the last read failed), or a tick of its grid has come since its
    last read. A tick a stalled scheduler skipped is made up at the next poll, not at the next grid tick."""
    return last_read is None or latest(every, settle, now) > last_read


def detection_delay(period: timedelta, m: int, settle: timedelta, read_every: timedelta | None = None) -> timedelta:
    """The worst-case time from a breach's first datapoint to the poll that judges it, under the aligned
    schedule: the first of M breaching buckets starts, the M-th closes M periods later and is read `settle`
    after that; reading only every `read_every` (a whole number of periods) adds up to `read_every` less
    one period, when the M-th bucket closed a period after a read."""
    late = (read_every - period) if read_every is not None and read_every > period else ZERO
    return m * period + settle + late
