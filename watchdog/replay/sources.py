"""Sources that answer from history, for a replay: each poll gives what the live source would have
given at that time, from CloudWatch's history (the cache), a recording of the daemon's polls
(`--record`), or a trace of the decision corpus. They do no I/O."""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from operator import itemgetter
from datetime import datetime, timedelta
from typing import Any

from watchdog.core.rules import Datapoint, Value, evaluation_range
from watchdog.core.signals import Query
from watchdog.sources.base import SourceError
from watchdog.sources.cloudwatch import Window, window_of
from watchdog.sources.periodic import Due, ReadPlan


@dataclass
class Series:
    """One query's datapoints, oldest first; `visible[i]` is when point i could first be read (a late
    datapoint), or None: as soon as its timestamp has passed."""

    times: list[datetime] = field(default_factory=list)
    values: list[Value] = field(default_factory=list)
    visible: list[datetime | None] = field(default_factory=list)
    # The same points as (time, value) tuples, made once: a poll's answer is then a slice of it, not a list
    # built point by point (a week's replay of 100 rules asks for a million answers).
    points: list[Datapoint] = field(default_factory=list)
    late: int = 0  # how many points have a `visible` time: while none, every point is read as soon as it is due
    shared: bool = False  # `times` is shared with other series (`of_many`): `add` copies it first

    def __post_init__(self) -> None:
        if not self.points and self.times:
            self.points = list(zip(self.times, self.values))
        self.late = sum(1 for v in self.visible if v is not None)

    @classmethod
    def of(cls, points: Sequence[Datapoint]) -> Series:
        ordered = sorted(points, key=_time)
        return cls([t for t, _ in ordered], [v for _, v in ordered], [None] * len(ordered), ordered)

    @classmethod
    def of_many(cls, answers: Mapping[str, Sequence[Datapoint]]) -> dict[str, Series]:
        """`of` for each query; those whose times are the same share one list of them, so that a poll finds
        its window in it once for all of them (with `points`: a poll's answer of 100 queries over a week of
        1-minute data, 105 -> 22 µs, timeit, CPU)."""
        out: dict[str, Series] = {}
        # Candidates by length and ends, then compared whole: hashing every time (an aware datetime's hash asks
        # its offset) took 0.45 s for 100 weeks of minutes.
        owners: dict[tuple[object, ...], list[Series]] = {}
        for key, points in answers.items():
            s = out[key] = cls.of(points)
            alike = owners.setdefault((len(s.times), *s.times[:1], *s.times[-1:]), [])
            owner = next((o for o in alike if o.times == s.times), None)
            if owner is None:
                alike.append(s)
            else:
                s.times = owner.times
                s.shared = owner.shared = True
        return out

    def add(self, ts: datetime, value: Value, visible: datetime | None = None) -> None:
        if self.shared:
            self.times, self.shared = list(self.times), False
        k = bisect_right(self.times, ts)
        self.times.insert(k, ts)
        self.values.insert(k, value)
        self.visible.insert(k, visible)
        self.points.insert(k, (ts, value))
        if visible is not None:
            self.late += 1

    def between(self, start: datetime | None, end: datetime, now: datetime, *, before_end: bool = False) -> list[Datapoint]:
        """Points with start <= ts <= end (ts < end with `before_end`) that could be read at `now`."""
        return self.cut(self.span(start, end, before_end), now)

    def span(self, start: datetime | None, end: datetime, before_end: bool = False) -> tuple[int, int]:
        """Where the points of `between` lie in `times`, before the late ones are left out."""
        lo = 0 if start is None else bisect_left(self.times, start)
        return lo, (bisect_left if before_end else bisect_right)(self.times, end)

    def cut(self, span: tuple[int, int], now: datetime) -> list[Datapoint]:
        """The points in `span` (of `span`) that could be read at `now`."""
        lo, hi = span
        if not self.late:
            return self.points[lo:hi]
        out = []
        for i in range(lo, hi):
            seen = self.visible[i]
            if seen is None or seen <= now:
                out.append(self.points[i])
        return out


_time = itemgetter(0)


@dataclass(frozen=True)
class Skimmed:
    """A skipped poll: when, and what its plan read (None: every query)."""

    at: datetime
    key: object
    due: Due | None


@dataclass(frozen=True)
class Outage:
    start: datetime
    end: datetime  # exclusive
    error: str


class HistorySource:
    """A source of the config, answering from `series`. Sampled: the last readings up to now, as many as
    the live source keeps. Aggregated: the points of the live poll's window, the still-filling bucket
    as history has it (the rules never judge it)."""

    def __init__(self, name: str, interval: timedelta, sampled: bool, queries: Sequence[Query],
                 series: Mapping[str, Series], outages: Sequence[Outage] = (),
                 took: Mapping[datetime, float] | None = None):
        self.name, self.interval, self.sampled = name, interval, sampled
        # How long each recorded poll's read took: the replay's clock moves on by as much before the rules
        # are judged, as the daemon's did (replay/engine.py reads it).
        self.took = dict(took or {})
        self.answered: Callable[[datetime], None] = lambda _at: None
        # A source read on its rules' periods reads the queries its plan says are due, as the live one does
        # (the replay's engine gives it the live kind's plan); None: every query at every poll.
        self.plan: ReadPlan | None = None
        self._windows: dict[Any, Window] = {}  # per Due.key
        self._queries = list(queries)
        self.series = {q.key: series.get(q.key, Series()) for q in self._queries}
        self._outages = sorted(outages, key=lambda o: o.start)
        self._keep = evaluation_range(max((q.rule.evaluation_periods for q in self._queries), default=1)) + 2
        self._window = Window.of(self._queries) if self._queries and not sampled else None  # once, not per poll
        self.polls = 0
        # What the replay could not see, for its output: per query the polls that gave it a datapoint, and
        # per error the polls that failed with it.
        self.seen: dict[str, int] = dict.fromkeys(self.series, 0)
        self.failed: dict[str, int] = {}

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

    @property
    def has_outages(self) -> bool:
        return bool(self._outages)

    async def poll_due(self, now: datetime, hot: Collection[str]) -> Mapping[str, Sequence[Datapoint]]:
        plan = self.plan
        if plan is None:
            return await self.poll(now)
        due = plan.due(now, hot)
        try:
            self._begin(now)
        except SourceError:
            plan.forget()
            raise
        if not due.shared:
            return {}
        plan.read(due, now)
        return self._count(self._due_answer(due, now))

    def _due_answer(self, due: Due, now: datetime) -> dict[str, list[Datapoint]]:
        window = self._windows.get(due.key)
        if window is None:
            window = self._windows[due.key] = window_of(due.shared)
        start, end = window.at(now)
        return self._window_of([q.key for s in due.shared for q in s.queries], start, end, now)

    def _begin(self, now: datetime) -> None:
        self.polls += 1
        self.answered(now + timedelta(seconds=self.took.get(now, 0.0)))
        for o in self._outages:
            if o.start <= now < o.end:
                self.failed[o.error] = self.failed.get(o.error, 0) + 1
                raise SourceError(o.error)

    async def poll(self, now: datetime) -> Mapping[str, Sequence[Datapoint]]:
        self._begin(now)
        if not self._queries:
            return {}
        if self.sampled:
            out = {}
            for key, s in self.series.items():
                hi = bisect_right(s.times, now)
                out[key] = s.between(s.times[max(0, hi - self._keep)] if hi else None, now, now)[-self._keep:]
        else:
            out = self._answer(now)
        return self._count(out)

    def _answer(self, now: datetime) -> dict[str, list[Datapoint]]:
        # GetMetricData's EndTime is exclusive: a bucket that starts at it is not in the live answer.
        start, end = (self._window or Window.of(self._queries)).at(now)
        return self._window_of(self.series, start, end, now)

    def skim(self, now: datetime, due: Due | None) -> Skimmed:
        """A poll the replay skips (replay/quiet.py) as it leaves this source, without its answer: its count,
        its plan's reads, and a datapoint seen by each query read (the skip holds that each has N); `answer`
        makes the answer when the board needs it. `due`: what its plan reads at `now` (`ReadPlan.due`), None
        without a plan. An aggregated source without outages only."""
        self._begin(now)
        plan = self.plan
        if plan is None or due is None:
            keys: Iterable[str] = self.series
            skimmed = Skimmed(now, None, None)
        else:
            skimmed = Skimmed(now, due.key, due)
            if not due.shared:
                return skimmed
            plan.read(due, now)
            keys = [q.key for s in due.shared for q in s.queries]
        seen = self.seen
        for key in keys:
            seen[key] += 1
        return skimmed

    def answer(self, skimmed: Skimmed) -> Mapping[str, Sequence[Datapoint]]:
        """What the skipped poll would have answered."""
        if skimmed.due is None:
            return self._answer(skimmed.at) if self._queries else {}
        return self._due_answer(skimmed.due, skimmed.at) if skimmed.due.shared else {}

    def _window_of(self, keys: Iterable[str], start: datetime, end: datetime, now: datetime) -> dict[str, list[Datapoint]]:
        """Each query's points in [start, end) readable at `now`; the window is found once per list of times
        (series from `Series.of_many` share theirs)."""
        series = self.series
        spans: dict[int, tuple[int, int]] = {}
        out = {}
        for key in keys:
            s = series[key]
            span = spans.get(id(s.times))
            if span is None:
                span = spans[id(s.times)] = s.span(start, end, before_end=True)
            out[key] = s.cut(span, now)
        return out

    def _count(self, out: dict[str, list[Datapoint]]) -> dict[str, list[Datapoint]]:
        for key, points in out.items():
            if points:
                self.seen[key] += 1
        return out
