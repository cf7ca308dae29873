"""When each source is polled: one schedule for the live daemon and the replay. Pure: times in, times out.

A poll's tick is an input of the poll (Runtime.poll(name, due)); this module is the only place that says
which ticks there are. The daemon's APScheduler trigger fires at them (app.py), the replay walks them over
its range (replay/engine.py), and `run --once` has one tick of its own. Today a source is polled every
`interval` from the moment polling starts; anything that changes when polls fall (period alignment, say)
changes `first_due` and `next_due` here, and both the daemon and the replay follow.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Protocol


class Paced(Protocol):
    """What the schedule reads of a source's config."""

    @property
    def interval(self) -> timedelta: ...


def first_due(source: Paced, start: datetime) -> datetime:
    """The first tick of a source whose polling starts at `start`: at once."""
    return start


def next_due(source: Paced, after: datetime) -> datetime:
    """The tick that follows the tick `after`."""
    return after + source.interval


def ticks(source: Paced, start: datetime, end: datetime) -> Iterator[datetime]:
    """Every tick from `start` to `end` (both included), made as it is consumed: a 100 ms interval over two
    weeks is 12 M of them."""
    due = first_due(source, start)
    while due <= end:
        yield due
        due = next_due(source, due)


def count(source: Paced, start: datetime, end: datetime) -> int:
    """How many ticks `ticks` gives, without making them."""
    due = first_due(source, start)
    if due > end:
        return 0
    return (end - due) // source.interval + 1


def catch_up(source: Paced, previous: datetime | None, start: datetime, now: datetime) -> datetime:
    """The tick a run of the live scheduler stands for: the one after `previous` (the first of all when
    there is none) or, when runs were missed and coalesced into this one (a stalled loop), the newest tick
    that has come by `now`. Always later than `previous`, so no tick is polled twice."""
    due = first_due(source, start) if previous is None else next_due(source, previous)
    while (later := next_due(source, due)) <= now:
        due = later
    return due
